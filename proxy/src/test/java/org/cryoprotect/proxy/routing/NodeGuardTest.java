package org.cryoprotect.proxy.routing;

import static org.assertj.core.api.Assertions.assertThat;

import io.netty.channel.DefaultEventLoop;
import io.netty.channel.EventLoop;
import io.netty.util.concurrent.Future;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Supplier;
import org.cryoprotect.proxy.backend.ServerConnection;
import org.cryoprotect.proxy.backend.ServerException;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.config.ProxyConfig.Resilience;
import org.cryoprotect.proxy.metrics.NodeStats;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse.Severity;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/** The breaker and retry policy of one node, with scripted connection attempts. */
class NodeGuardTest {
  private static final Endpoint NODE = new Endpoint("10.0.0.1", 5432);
  private final EventLoop loop = new DefaultEventLoop();
  private final List<String> events = new ArrayList<>();
  private final AtomicInteger opened = new AtomicInteger();

  private final ProxyMetrics metrics =
      new ProxyMetrics() {
        @Override
        public synchronized void retry(String node) {
          events.add("retry " + node);
        }

        @Override
        public synchronized void breakerTransition(String node, String from, String to) {
          events.add(from + "->" + to);
        }
      };

  @AfterEach
  void stop() {
    loop.shutdownGracefully(0, 1, TimeUnit.SECONDS);
  }

  private NodeGuard guard(int attempts, Duration backoff, Duration maxBackoff) {
    return guard(attempts, backoff, maxBackoff, Duration.ZERO);
  }

  private NodeGuard guard(int attempts, Duration backoff, Duration maxBackoff, Duration grace) {
    Resilience config =
        new Resilience(
            50,
            Duration.ofSeconds(5),
            4,
            10,
            Duration.ofSeconds(2),
            1,
            grace,
            attempts,
            backoff,
            maxBackoff);
    NodeGuard guard = new NodeGuard(NODE, config, metrics, g -> opened.incrementAndGet());
    guard.role("primary");
    return guard;
  }

  private static ServerException refused() {
    return new ServerException(SqlState.SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION, "refused");
  }

  /** Attempts that fail {@code failures} times, then succeed; counts calls. */
  private Supplier<Future<ServerConnection>> script(int failures, AtomicInteger calls) {
    return () -> {
      int n = calls.incrementAndGet();
      return n <= failures
          ? loop.newFailedFuture(refused())
          : loop.<ServerConnection>newSucceededFuture(null);
    };
  }

  private Future<ServerConnection> connect(
      NodeGuard guard, Supplier<Future<ServerConnection>> attempt, Duration budget) {
    long deadline = System.nanoTime() + budget.toNanos();
    return loop.submit(() -> guard.connect(loop, attempt, deadline)).syncUninterruptibly().getNow();
  }

  @Test
  void transientFailuresAreRetriedWithBackoff() {
    NodeGuard guard = guard(4, Duration.ofMillis(20), Duration.ofMillis(100));
    AtomicInteger calls = new AtomicInteger();
    long start = System.nanoTime();
    Future<ServerConnection> f = connect(guard, script(2, calls), Duration.ofSeconds(5));
    assertThat(f.awaitUninterruptibly(5, TimeUnit.SECONDS)).isTrue();
    long tookMs = (System.nanoTime() - start) / 1_000_000;
    assertThat(f.isSuccess()).isTrue();
    assertThat(calls).hasValue(3);
    assertThat(events).containsExactly("retry " + NODE, "retry " + NODE);
    // 20 ms then 40 ms, each with +/-50 % jitter: at least 30 ms in all.
    assertThat(tookMs).isGreaterThanOrEqualTo(30);
  }

  @Test
  void retriesStopAtTheDeadlineWithTheLastError() {
    NodeGuard guard = guard(100, Duration.ofMillis(50), Duration.ofMillis(50));
    AtomicInteger calls = new AtomicInteger();
    long start = System.nanoTime();
    Future<ServerConnection> f = connect(guard, script(1000, calls), Duration.ofMillis(300));
    assertThat(f.awaitUninterruptibly(5, TimeUnit.SECONDS)).isTrue();
    long tookMs = (System.nanoTime() - start) / 1_000_000;
    assertThat(f.cause()).isInstanceOf(ServerException.class).hasMessageContaining("refused");
    assertThat(tookMs).isLessThan(1_000);
    assertThat(calls.get()).isBetween(2, 15);
  }

  @Test
  void anErrorTheServerSentIsNotRetriedAndProvesTheNodeAlive() {
    NodeGuard guard = guard(4, Duration.ofMillis(10), Duration.ofMillis(10));
    AtomicInteger calls = new AtomicInteger();
    ServerException wrongPassword =
        new ServerException(
            ErrorResponse.of(Severity.FATAL, SqlState.INVALID_PASSWORD, "password failed"));
    for (int i = 0; i < 10; i++) {
      Future<ServerConnection> f =
          connect(
              guard,
              () -> {
                calls.incrementAndGet();
                return loop.newFailedFuture(wrongPassword);
              },
              Duration.ofSeconds(5));
      assertThat(f.awaitUninterruptibly(5, TimeUnit.SECONDS)).isTrue();
      assertThat(f.cause()).isSameAs(wrongPassword);
    }
    assertThat(calls).hasValue(10);
    assertThat(guard.state()).isEqualTo(NodeStats.CLOSED);
  }

  @Test
  void failuresOpenTheBreakerAndWorkThenFailsFast() {
    NodeGuard guard = guard(1, Duration.ofMillis(10), Duration.ofMillis(10));
    AtomicInteger calls = new AtomicInteger();
    for (int i = 0; i < 4; i++) {
      connect(guard, script(1000, calls), Duration.ofSeconds(5)).awaitUninterruptibly();
    }
    assertThat(guard.state()).isEqualTo(NodeStats.OPEN);
    assertThat(guard.admits()).isFalse();
    assertThat(opened).hasValue(1);
    assertThat(events).contains("closed->open");

    int before = calls.get();
    long start = System.nanoTime();
    Future<ServerConnection> f = connect(guard, script(0, calls), Duration.ofSeconds(5));
    assertThat(f.awaitUninterruptibly(1, TimeUnit.SECONDS)).isTrue();
    assertThat(System.nanoTime() - start).isLessThan(TimeUnit.MILLISECONDS.toNanos(100));
    assertThat(calls.get()).isEqualTo(before); // not even tried
    assertThat(f.cause())
        .isInstanceOf(ServerException.class)
        .hasMessageContaining("10.0.0.1:5432 is unavailable (circuit breaker open")
        .hasMessageContaining("tried again in");
    assertThat(((ServerException) f.cause()).state()).isEqualTo(SqlState.CONNECTION_FAILURE);
  }

  @Test
  void inTheGraceAConnectWaitsForTheProbeInsteadOfFailingFast() throws Exception {
    NodeGuard guard = guard(1, Duration.ofMillis(10), Duration.ofMillis(10), Duration.ofSeconds(3));
    AtomicInteger calls = new AtomicInteger();
    for (int i = 0; i < 4; i++) {
      connect(guard, script(1000, calls), Duration.ofSeconds(5)).awaitUninterruptibly();
    }
    assertThat(guard.state()).isEqualTo(NodeStats.OPEN);
    assertThat(guard.admits()).isFalse();
    assertThat(guard.failsFast()).isFalse();
    assertThat(opened).as("waiting clients are not failed in the grace").hasValue(0);

    int before = calls.get();
    Future<ServerConnection> f = connect(guard, script(0, calls), Duration.ofSeconds(5));
    Thread.sleep(300);
    assertThat(f.isDone()).as("waits while the breaker is open").isFalse();
    assertThat(calls.get()).as("and tries nothing meanwhile").isEqualTo(before);
    guard.probeSucceeded(); // the node is back: half-open lets the waiting connect through
    assertThat(f.awaitUninterruptibly(2, TimeUnit.SECONDS)).isTrue();
    assertThat(f.isSuccess()).as("%s", f.cause()).isTrue();
  }

  @Test
  void pastTheGraceWorkFailsFastAgainAndReopeningDoesNotRenewIt() throws Exception {
    NodeGuard guard =
        guard(1, Duration.ofMillis(10), Duration.ofMillis(10), Duration.ofMillis(300));
    AtomicInteger calls = new AtomicInteger();
    for (int i = 0; i < 4; i++) {
      connect(guard, script(1000, calls), Duration.ofSeconds(5)).awaitUninterruptibly();
    }
    Future<ServerConnection> waiting = connect(guard, script(0, calls), Duration.ofSeconds(5));
    Thread.sleep(500);
    assertThat(waiting.isDone()).as("the grace ended: the waiting connect gave up").isTrue();
    assertThat(waiting.cause()).hasMessageContaining("circuit breaker open");
    assertThat(guard.failsFast()).isTrue();
    guard.probeSucceeded(); // half-open, and the trial fails: open again, still no grace
    connect(guard, script(1000, calls), Duration.ofSeconds(5)).awaitUninterruptibly();
    assertThat(guard.state()).isEqualTo(NodeStats.OPEN);
    assertThat(guard.failsFast()).isTrue();
  }

  @Test
  void aReplicaHasNoGraceItsReadsGoElsewhere() {
    NodeGuard guard = guard(1, Duration.ofMillis(10), Duration.ofMillis(10), Duration.ofSeconds(3));
    guard.role("replica");
    AtomicInteger calls = new AtomicInteger();
    for (int i = 0; i < 4; i++) {
      connect(guard, script(1000, calls), Duration.ofSeconds(5)).awaitUninterruptibly();
    }
    assertThat(guard.failsFast()).isTrue();
    assertThat(opened).hasValue(1);
  }

  @Test
  void aProbeThatFailsWhileClientsAreServedDoesNotCount() {
    NodeGuard guard = guard(1, Duration.ofMillis(10), Duration.ofMillis(10));
    for (int i = 0; i < 5; i++) {
      long began = System.nanoTime();
      guard.served(System.nanoTime()); // a client transaction ended well meanwhile
      assertThat(guard.probeFailed("db", "timed out on a saturated machine", began)).isFalse();
    }
    assertThat(guard.state()).isEqualTo(NodeStats.CLOSED);
    // Nothing served since: the probes count again.
    long quiet = System.nanoTime();
    assertThat(guard.probeFailed("db", "timed out", quiet)).isFalse();
    assertThat(guard.probeFailed("db", "timed out", quiet)).isTrue();
    assertThat(guard.state()).isEqualTo(NodeStats.OPEN);
  }

  @Test
  void failuresOfDifferentProbersAtOnceAreNotInARow() {
    NodeGuard guard = guard(1, Duration.ofMillis(10), Duration.ofMillis(10));
    long began = System.nanoTime();
    // Two databases on one node, both probes stalled by the same hiccup of a saturated machine.
    assertThat(guard.probeFailed("scale", "Read timed out", began)).isFalse();
    assertThat(guard.probeFailed("acq_sat", "Read timed out", began)).isFalse();
    assertThat(guard.state()).isEqualTo(NodeStats.CLOSED);
    // One prober failing again is two in a row: the node is down.
    assertThat(guard.probeFailed("scale", "connection refused", System.nanoTime())).isTrue();
    assertThat(guard.state()).isEqualTo(NodeStats.OPEN);
  }

  @Test
  void aSuccessfulProbeEndsEveryRun() {
    NodeGuard guard = guard(1, Duration.ofMillis(10), Duration.ofMillis(10));
    assertThat(guard.probeFailed("a", "slow", System.nanoTime())).isFalse();
    guard.probeSucceeded(); // another database's probe reached the node
    assertThat(guard.probeFailed("a", "slow", System.nanoTime())).isFalse();
    assertThat(guard.state()).isEqualTo(NodeStats.CLOSED);
  }

  @Test
  void probesOpenAndHalfOpenTheBreaker() {
    NodeGuard guard = guard(1, Duration.ofMillis(10), Duration.ofMillis(10));
    assertThat(guard.probeFailed("db", "slow", System.nanoTime()))
        .isFalse(); // one failure may be a slow probe
    assertThat(guard.state()).isEqualTo(NodeStats.CLOSED);
    assertThat(guard.probeFailed("db", "connection refused", System.nanoTime())).isTrue();
    assertThat(guard.state()).isEqualTo(NodeStats.OPEN);
    assertThat(guard.unavailable("primary").getMessage())
        .contains(
            "primary 10.0.0.1:5432 is unavailable (circuit breaker open: health probe failed");
    guard.role("replica"); // as the probes call it
    assertThat(guard.unavailable().getMessage())
        .startsWith("replica 10.0.0.1:5432 is unavailable")
        .containsPattern("tried again in [1-9][0-9]* ms|tried again in 0 ms");
    guard.probeFailed("db", "again", System.nanoTime()); // already open: no second transition
    assertThat(opened).hasValue(1);

    guard.probeSucceeded();
    assertThat(guard.state()).isEqualTo(NodeStats.HALF_OPEN);
    assertThat(guard.admits()).isTrue();
    AtomicInteger calls = new AtomicInteger();
    assertThat(
            connect(guard, script(0, calls), Duration.ofSeconds(1))
                .awaitUninterruptibly()
                .isSuccess())
        .isTrue();
    assertThat(guard.state()).isEqualTo(NodeStats.CLOSED); // one permitted call in half-open
    assertThat(events).containsSubsequence("closed->open", "open->half_open", "half_open->closed");
  }

  @Test
  void outstandingWorkIsCounted() {
    NodeGuard guard = guard(1, Duration.ofMillis(10), Duration.ofMillis(10));
    guard.started();
    guard.started();
    guard.finished();
    assertThat(guard.outstanding()).isEqualTo(1);
  }
}

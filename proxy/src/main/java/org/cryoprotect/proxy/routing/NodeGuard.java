package org.cryoprotect.proxy.routing;

import io.github.resilience4j.circuitbreaker.CircuitBreaker;
import io.github.resilience4j.circuitbreaker.CircuitBreakerConfig;
import io.github.resilience4j.core.IntervalFunction;
import io.github.resilience4j.retry.Retry;
import io.github.resilience4j.retry.RetryConfig;
import io.netty.channel.EventLoop;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.Promise;
import java.time.Duration;
import java.time.Instant;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Consumer;
import org.cryoprotect.proxy.backend.ServerConnection;
import org.cryoprotect.proxy.backend.ServerException;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.config.ProxyConfig.Resilience;
import org.cryoprotect.proxy.metrics.NodeStats;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.protocol.SqlState;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * What the proxy knows about one PostgreSQL node as a whole: its circuit breaker (Resilience4j),
 * the retry policy for connecting to it, and how much work it has outstanding right now.
 *
 * <p>The breaker counts connection attempts (a timeout or a refusal is a failure, a connection
 * slower than {@code slow_call} a slow call). A server connection lost while in use is not counted:
 * one backend ended by an administrator, or by a client's own bad input, is no sign the node is
 * unwell; it makes the router probe the node at once ({@link Router#lost}), and a node that is down
 * fails that probe and the reconnects, which count. A health probe that cannot reach the node opens
 * it at once; one that reaches it again moves it to half-open, so the next connection attempts test
 * the node without waiting out {@code open_for}. An error the server itself sent at login (wrong
 * password, unknown database, too many clients) proves the node is alive and counts as a success.
 *
 * <p>Grace: for the first {@code grace} of a primary's outage (measured from the breaker leaving
 * closed, not from each reopening) work is not failed fast. A client's connect waits, polling the
 * breaker, until a probe finds the node back or its own deadline passes: a restart that is over in
 * seconds costs only the transactions it interrupted. Past the grace the breaker fails work fast,
 * as DESIGN §4 wants for a node that stays down. A replica has no grace: its reads can go
 * elsewhere.
 */
public final class NodeGuard {
  private static final Logger log = LoggerFactory.getLogger(NodeGuard.class);

  private final Endpoint node;
  private final CircuitBreaker breaker;
  private final Retry retry;
  private final Duration openFor;
  private final long graceNanos;
  private volatile long downSinceNanos; // when the breaker last left closed; 0 while closed
  private final AtomicInteger outstanding = new AtomicInteger();
  private volatile long lastServedNanos = System.nanoTime() - TimeUnit.DAYS.toNanos(1);
  private volatile Instant openedAt = Instant.EPOCH;
  private volatile String openReason = "";
  // Consecutive failed probes per prober (each database probes its nodes); guarded by this.
  private final Map<String, Integer> probeFailures = new HashMap<>();
  private volatile String role = "node"; // "primary" or "replica" once a probe has said which
  static final int PROBE_FAILURES_TO_OPEN = 2;
  static final long GRACE_POLL_MS = 50;

  NodeGuard(
      Endpoint node, Resilience config, ProxyMetrics metrics, Consumer<NodeGuard> whenOpened) {
    this.node = node;
    this.openFor = config.openFor();
    this.graceNanos = config.grace().toNanos();
    this.breaker =
        CircuitBreaker.of(
            "node-" + node,
            CircuitBreakerConfig.custom()
                .slidingWindowType(CircuitBreakerConfig.SlidingWindowType.COUNT_BASED)
                .slidingWindowSize(config.window())
                .minimumNumberOfCalls(Math.min(config.minimumCalls(), config.window()))
                .failureRateThreshold(config.failureRate())
                .slowCallRateThreshold(config.failureRate())
                .slowCallDurationThreshold(config.slowCall())
                .waitDurationInOpenState(config.openFor())
                .permittedNumberOfCallsInHalfOpenState(config.halfOpenCalls())
                .automaticTransitionFromOpenToHalfOpenEnabled(false)
                .writableStackTraceEnabled(false)
                .build());
    this.retry =
        Retry.of(
            "connect-" + node,
            RetryConfig.<ServerConnection>custom()
                .maxAttempts(config.retryAttempts())
                .intervalFunction(
                    IntervalFunction.ofExponentialRandomBackoff(
                        config.retryBackoff(), 2.0, 0.5, config.retryMaxBackoff()))
                .retryOnException(NodeGuard::worthRetrying)
                .failAfterMaxAttempts(false)
                .build());
    retry.getEventPublisher().onRetry(e -> metrics.retry(node.toString()));
    breaker
        .getEventPublisher()
        .onStateTransition(
            e -> {
              String from = label(e.getStateTransition().getFromState());
              String to = label(e.getStateTransition().getToState());
              metrics.breakerTransition(node.toString(), from, to);
              CircuitBreaker.State toState = e.getStateTransition().getToState();
              if (toState == CircuitBreaker.State.CLOSED) {
                downSinceNanos = 0;
              } else if (downSinceNanos == 0) {
                downSinceNanos = nonZero(System.nanoTime());
              }
              if (toState == CircuitBreaker.State.OPEN) {
                openedAt = Instant.now();
                log.warn(
                    "circuit breaker for {} opened ({}); new work fails fast for {} ms"
                        + " once the outage is {} ms old",
                    node,
                    openReason,
                    openFor.toMillis(),
                    TimeUnit.NANOSECONDS.toMillis(graceNanos));
                if (!inGrace()) {
                  whenOpened.accept(this); // in the grace, waiting clients go on waiting
                }
              } else {
                log.info("circuit breaker for {}: {} -> {}", node, from, to);
              }
            });
  }

  public Endpoint node() {
    return node;
  }

  /** False while the breaker is open and its {@code open_for} has not passed: fail fast. */
  public boolean admits() {
    CircuitBreaker.State state = breaker.getState();
    if (state != CircuitBreaker.State.OPEN && state != CircuitBreaker.State.FORCED_OPEN) {
      return true;
    }
    return Instant.now().isAfter(openedAt.plus(openFor));
  }

  /**
   * True when work for the node must fail now: the breaker does not admit it and the outage is past
   * its grace. In the grace, work goes ahead and its connect waits for the node.
   */
  public boolean failsFast() {
    return !admits() && !inGrace();
  }

  /** A primary whose breaker is not closed, and left closed less than {@code grace} ago. */
  boolean inGrace() {
    long since = downSinceNanos;
    return since != 0 && System.nanoTime() - since < graceNanos && "primary".equals(role);
  }

  private static long nonZero(long nanos) {
    return nanos == 0 ? 1 : nanos;
  }

  public boolean isOpen() {
    return breaker.getState() == CircuitBreaker.State.OPEN;
  }

  /** {@link NodeStats#CLOSED}, {@link NodeStats#HALF_OPEN} or {@link NodeStats#OPEN}. */
  public int state() {
    return switch (breaker.getState()) {
      case OPEN, FORCED_OPEN -> NodeStats.OPEN;
      case HALF_OPEN -> NodeStats.HALF_OPEN;
      default -> NodeStats.CLOSED;
    };
  }

  /** What the health probes know the node as: {@code primary} or {@code replica}. */
  void role(String role) {
    this.role = role;
  }

  /** {@link #unavailable(String)} naming the node by its configured role. */
  public ServerException unavailable() {
    return unavailable(role);
  }

  /** The error for work refused because the breaker is open; names the node and the retry time. */
  public ServerException unavailable(String role) {
    long retryInMs =
        Math.max(0, Duration.between(Instant.now(), openedAt.plus(openFor)).toMillis());
    return new ServerException(
        SqlState.CONNECTION_FAILURE,
        role
            + " "
            + node
            + " is unavailable (circuit breaker open: "
            + openReason
            + "); it will be tried again in "
            + retryInMs
            + " ms");
  }

  // ---------------------------------------------------------------- connecting

  /**
   * Connects through the breaker, retrying transient failures with exponential backoff and jitter
   * until {@code deadlineNanos} ({@link System#nanoTime}); runs and completes on {@code loop}.
   */
  public Future<ServerConnection> connect(
      EventLoop loop,
      java.util.function.Supplier<Future<ServerConnection>> attempt,
      long deadlineNanos) {
    Promise<ServerConnection> promise = loop.newPromise();
    Throwable[] last = new Throwable[1];
    retry
        .executeCompletionStage(loop, () -> once(loop, attempt, deadlineNanos, last))
        .whenComplete(
            (connection, error) -> {
              if (error == null) {
                if (!promise.trySuccess(connection)) {
                  connection.channel().close();
                }
                return;
              }
              Throwable cause = unwrap(error);
              if (cause instanceof GaveUp gaveUp) {
                cause = gaveUp.getCause();
              }
              promise.tryFailure(cause);
            });
    return promise;
  }

  private CompletionStage<ServerConnection> once(
      EventLoop loop,
      java.util.function.Supplier<Future<ServerConnection>> attempt,
      long deadlineNanos,
      Throwable[] last) {
    if (last[0] != null && System.nanoTime() >= deadlineNanos) {
      return CompletableFuture.failedFuture(new GaveUp(last[0]));
    }
    if (!breaker.tryAcquirePermission()) {
      if (inGrace() && System.nanoTime() < deadlineNanos) {
        return later(loop, attempt, deadlineNanos, last); // not an attempt: none was made
      }
      return CompletableFuture.failedFuture(new GaveUp(unavailable()));
    }
    long start = System.nanoTime();
    CompletableFuture<ServerConnection> result = new CompletableFuture<>();
    attempt
        .get()
        .addListener(
            (Future<ServerConnection> f) -> {
              long took = System.nanoTime() - start;
              if (f.isSuccess()) {
                breaker.onSuccess(took, TimeUnit.NANOSECONDS);
                result.complete(f.getNow());
                return;
              }
              Throwable cause = f.cause();
              last[0] = cause;
              if (isNodeFailure(cause)) {
                openReason = "connecting failed: " + cause.getMessage();
                breaker.onError(took, TimeUnit.NANOSECONDS, cause);
              } else {
                breaker.onSuccess(took, TimeUnit.NANOSECONDS); // the server answered
              }
              result.completeExceptionally(cause);
            });
    return result;
  }

  /** {@link #once} again after {@link #GRACE_POLL_MS}: the breaker may admit work by then. */
  private CompletionStage<ServerConnection> later(
      EventLoop loop,
      java.util.function.Supplier<Future<ServerConnection>> attempt,
      long deadlineNanos,
      Throwable[] last) {
    CompletableFuture<ServerConnection> result = new CompletableFuture<>();
    loop.schedule(
        () ->
            once(loop, attempt, deadlineNanos, last)
                .whenComplete(
                    (connection, error) -> {
                      if (error == null) {
                        result.complete(connection);
                      } else {
                        result.completeExceptionally(unwrap(error));
                      }
                    }),
        GRACE_POLL_MS,
        TimeUnit.MILLISECONDS);
    return result;
  }

  /** Refused, timed out, or the server is starting up or shutting down: the node, not the login. */
  private static boolean isNodeFailure(Throwable cause) {
    if (cause instanceof ServerException e) {
      if (e.serverError() == null) {
        return true;
      }
      return SqlState.CANNOT_CONNECT_NOW.code().equals(e.serverError().sqlState());
    }
    return true;
  }

  private static boolean worthRetrying(Throwable error) {
    Throwable cause = unwrap(error);
    if (cause instanceof GaveUp) {
      return false;
    }
    if (cause instanceof ServerException e && e.serverError() != null) {
      String code = e.serverError().sqlState();
      return SqlState.CANNOT_CONNECT_NOW.code().equals(code)
          || SqlState.TOO_MANY_CONNECTIONS.code().equals(code);
    }
    return true;
  }

  private static Throwable unwrap(Throwable error) {
    return error instanceof CompletionException && error.getCause() != null
        ? error.getCause()
        : error;
  }

  /** Stops the retries: the deadline passed or the breaker refused. */
  private static final class GaveUp extends RuntimeException {
    GaveUp(Throwable cause) {
      super(cause.getMessage(), cause, false, false);
    }
  }

  // ---------------------------------------------------------------- other evidence

  /**
   * A health probe of {@code prober} (the database whose probe it was) that began at {@code
   * probeBeganNanos} could not reach the node. It does not count if a client transaction ended well
   * on the node since then; one failure may be a probe that was merely slow on a busy server; the
   * same prober's second in a row opens the breaker. Failures of different probers are not "in a
   * row": several databases on one node probe it at the same moments, and one stall of a saturated
   * machine fails all their probes at once. Returns true when the node is now deemed unreachable
   * (and its connections should be closed).
   */
  synchronized boolean probeFailed(String prober, String why, long probeBeganNanos) {
    if (lastServedNanos - probeBeganNanos > 0) {
      // The node answered proxied transactions while the probe ran: the probe was slow (a
      // saturated machine), the node is not down. Opening the breaker would fail all of them.
      log.debug("health probe of {} failed ({}) while the node served clients: ignored", node, why);
      return false;
    }
    if (probeFailures.merge(prober, 1, Integer::sum) < PROBE_FAILURES_TO_OPEN) {
      return false;
    }
    if (breaker.getState() != CircuitBreaker.State.OPEN) {
      openReason = "health probe failed: " + why;
      breaker.transitionToOpenState();
    }
    return true;
  }

  /** A health probe reached the node: let the next attempts test it. */
  synchronized void probeSucceeded() {
    probeFailures.clear();
    if (breaker.getState() == CircuitBreaker.State.OPEN) {
      breaker.transitionToHalfOpenState();
    }
  }

  // ---------------------------------------------------------------- load

  /** Transactions running on this node now, for least-outstanding balancing. */
  public int outstanding() {
    return outstanding.get();
  }

  public void started() {
    outstanding.incrementAndGet();
  }

  public void finished() {
    outstanding.decrementAndGet();
  }

  /** A client's query or transaction on this node got its ReadyForQuery at {@code nanoTime}. */
  public void served(long nanoTime) {
    lastServedNanos = nanoTime;
  }

  private static String label(CircuitBreaker.State state) {
    return switch (state) {
      case OPEN, FORCED_OPEN -> ProxyMetrics.BREAKER_OPEN;
      case HALF_OPEN -> ProxyMetrics.BREAKER_HALF_OPEN;
      default -> ProxyMetrics.BREAKER_CLOSED;
    };
  }

  @Override
  public String toString() {
    return node + " (" + label(breaker.getState()) + ")";
  }
}

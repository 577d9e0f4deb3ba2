package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.List;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.cryoprotect.proxy.testing.WireClient.Reply;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * {@code limits.idle_transaction_timeout} and {@code limits.client_idle_timeout}, PgBouncer's
 * settings with PostgreSQL's SQLSTATEs. One server connection (pool size 1): a client that opens a
 * transaction and goes quiet must not keep everyone else waiting for it.
 */
@PgTest
class IdleTimeoutsIT {
  static PgCluster pg;
  static RunningProxy proxy;

  @BeforeAll
  static void start(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("idle");
    pg.primary().sql("idle", "CREATE TABLE t (v int); INSERT INTO t VALUES (1)");
    proxy =
        RunningProxy.start(
            "pool: { mode: transaction, size: 1, wait_timeout: 10s }\n"
                + "limits: { idle_transaction_timeout: 1s, client_idle_timeout: 3s }\n"
                + RunningProxy.database("idle", "idle", "127.0.0.1", pg.primary().port()));
  }

  @AfterAll
  static void stop() {
    if (proxy != null) {
      proxy.close();
    }
  }

  static WireClient login() throws Exception {
    WireClient c = new WireClient(proxy.port()).timeout(10_000);
    c.startup("postgres", "idle");
    assertThat(c.readReply()).extracting(Message::type).doesNotContain('E');
    return c;
  }

  /** Reads until the proxy ends the connection; returns the FATAL it sent first. */
  static Message fatalThenClose(WireClient c) throws Exception {
    Message m = c.read();
    assertThat(m.type()).isEqualTo('E');
    assertThat(m.severity()).isEqualTo("FATAL");
    assertThat(c.ask("SELECT 1").closed()).as("closed after the FATAL").isTrue();
    return m;
  }

  @Test
  void aQuietOpenTransactionEndsWith25P03AndItsWorkRollsBack() throws Exception {
    try (WireClient quiet = login();
        WireClient other = login()) {
      assertThat(quiet.ask("BEGIN").status()).isEqualTo('T');
      assertThat(quiet.ask("UPDATE t SET v = 99").errors()).isEmpty();
      long start = System.nanoTime();
      // The only server connection is quiet's: other waits for it (wait_timeout is 10 s).
      other.send(WireClient.query("SELECT v FROM t"));
      Message fatal = fatalThenClose(quiet);
      assertThat(fatal.sqlState()).isEqualTo("25P03");
      assertThat(fatal.field('M')).contains("idle-in-transaction timeout");
      List<Message> answer = other.readReply();
      long waitedMs = (System.nanoTime() - start) / 1_000_000;
      System.out.printf("[IdleTimeoutsIT] the waiting client was served after %d ms%n", waitedMs);
      assertThat(new Reply(answer, false).rows()).containsExactly(List.of("1"));
      assertThat(waitedMs).isBetween(900L, 5_000L);
    }
  }

  @Test
  void aTransactionThatKeepsTalkingIsNotIdle() throws Exception {
    try (WireClient busy = login()) {
      assertThat(busy.ask("BEGIN").status()).isEqualTo('T');
      for (int i = 0; i < 6; i++) {
        Thread.sleep(400);
        assertThat(busy.ask("SELECT 1").errors()).isEmpty();
      }
      // A statement that runs past the limit is not idleness either.
      assertThat(busy.ask("SELECT pg_sleep(1.5)").errors()).isEmpty();
      assertThat(busy.ask("COMMIT").status()).isEqualTo('I');
    }
  }

  @Test
  void aSilentClientEndsWith57P05AndATalkingOneStays() throws Exception {
    long start = System.nanoTime(); // the idle clock starts at login
    try (WireClient silent = login();
        WireClient talking = login()) {
      java.util.concurrent.CompletableFuture<Void> talk =
          java.util.concurrent.CompletableFuture.runAsync(
              () -> {
                try {
                  for (int i = 0; i < 10; i++) {
                    Thread.sleep(500);
                    assertThat(talking.ask("SELECT 1").errors()).isEmpty();
                  }
                } catch (Exception e) {
                  throw new IllegalStateException(e);
                }
              });
      silent.timeout(2_500);
      assertThatThrownBy(silent::read)
          .as("nothing before the limit")
          .isInstanceOf(java.net.SocketTimeoutException.class);
      silent.timeout(10_000);
      Message fatal = fatalThenClose(silent);
      long ms = (System.nanoTime() - start) / 1_000_000;
      System.out.printf("[IdleTimeoutsIT] the silent client was ended after %d ms%n", ms);
      assertThat(fatal.sqlState()).isEqualTo("57P05");
      assertThat(ms).isBetween(3_000L, 6_000L);
      talk.get(30, java.util.concurrent.TimeUnit.SECONDS); // five seconds of talk: never ended
    }
  }

  /**
   * {@code limits.query_timeout}: a statement running past it is cancelled; the client hears
   * PostgreSQL's 57014 and goes on in the same session. Shorter statements are left alone.
   */
  @Test
  void aQueryPastQueryTimeoutIsCancelledAndTheSessionGoesOn() throws Exception {
    try (RunningProxy timed =
        RunningProxy.start(
            "pool: { mode: transaction, size: 1 }\n"
                + "limits: { query_timeout: 1s }\n"
                + RunningProxy.database("idle", "idle", "127.0.0.1", pg.primary().port()))) {
      WireClient c = new WireClient(timed.port()).timeout(10_000);
      try (c) {
        c.startup("postgres", "idle");
        assertThat(c.readReply()).extracting(Message::type).doesNotContain('E');
        assertThat(c.ask("SELECT pg_sleep(0.5)").errors()).as("under the limit").isEmpty();
        long start = System.nanoTime();
        Reply slow = c.ask("SELECT pg_sleep(8)");
        long ms = (System.nanoTime() - start) / 1_000_000;
        System.out.printf("[IdleTimeoutsIT] pg_sleep(8) cancelled after %d ms%n", ms);
        assertThat(slow.error()).isNotNull();
        assertThat(slow.error().sqlState()).isEqualTo("57014");
        assertThat(ms).isBetween(1_000L, 3_000L);
        assertThat(c.ask("SELECT 41 + 1").rows()).containsExactly(List.of("42"));
      }
    }
  }
}

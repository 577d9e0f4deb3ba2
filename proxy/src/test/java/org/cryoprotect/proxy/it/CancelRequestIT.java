package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.Backends;
import org.cryoprotect.proxy.testing.FaultRelay;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.KeyData;
import org.cryoprotect.proxy.testing.WireClient.Reply;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A CancelRequest with a client's key (the proxy's own BackendKeyData) cancels that client's query
 * and never another client's, even on the same server connection (pool size 1). A regression test:
 * the proxy forwards a cancel only to the server connection the client holds now.
 */
@PgTest
class CancelRequestIT {
  static PgCluster pg;
  static RunningProxy proxy;

  @BeforeAll
  static void start(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("app");
    proxy =
        RunningProxy.start(
            "pool: { mode: transaction, size: 1, wait_timeout: 20s }\n"
                + RunningProxy.database("app", "app", "127.0.0.1", pg.primary().port()));
  }

  @AfterAll
  static void stop() {
    if (proxy != null) {
      proxy.close();
    }
  }

  @Test
  void cancelStopsItsOwnClientsQuery() throws Exception {
    try (WireClient a = login()) {
      KeyData key = a.keyData();
      assertThat(key).isNotNull();
      String marker = "/* cancel-own */";
      a.send(WireClient.query("SELECT pg_sleep(5) " + marker));
      long start = System.nanoTime();
      awaitActive(marker);
      WireClient.cancel(proxy.port(), key);
      Reply r = a.ask(new byte[0]);
      assertThat(r.error()).as("%s", r).isNotNull();
      assertThat(r.error().sqlState()).as("%s", r).isEqualTo("57014");
      assertThat(r.status()).isEqualTo('I');
      assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(4));
    }
  }

  /**
   * A ran a statement and is idle; B runs {@code pg_sleep(2)} on the same (only) server connection;
   * a cancel with A's key arrives meanwhile. B's statement must finish normally.
   */
  @Test
  void cancelOfAnIdleClientNeverReachesTheNextClientOfItsServerConnection() throws Exception {
    try (WireClient a = login();
        WireClient b = login()) {
      Reply first = a.ask("SELECT pg_backend_pid()");
      String pid = first.rows().get(0).get(0);
      String marker = "/* cancel-other */";
      b.send(WireClient.query("SELECT pg_sleep(2), pg_backend_pid() " + marker));
      awaitActive(marker);
      for (int i = 0; i < 3; i++) {
        WireClient.cancel(proxy.port(), a.keyData());
      }
      Reply r = b.ask(new byte[0]);
      assertThat(r.errors()).as("B's statement: %s", r).isEmpty();
      assertThat(r.rows()).as("%s", r).hasSize(1);
      assertThat(r.rows().get(0).get(1)).as("the same server connection").isEqualTo(pid);
      // A's own later statement is not cancelled either (a cancel never waits for a next query).
      assertThat(a.ask("SELECT 1").errors()).isEmpty();
    }
  }

  /**
   * Cancels sent with A's key while A runs many short statements and B runs long ones: only A's
   * statements may be cancelled.
   */
  @Test
  void cancelsRacingAClientsShortStatementsNeverHitAnother() throws Exception {
    try (WireClient a = login();
        WireClient b = login()) {
      CompletableFuture<Reply> bRun =
          CompletableFuture.supplyAsync(
              () -> {
                try {
                  Thread.sleep(100);
                  return b.ask("SELECT count(*) FROM pg_sleep(0.3), generate_series(1, 1000)");
                } catch (Exception e) {
                  throw new IllegalStateException(e);
                }
              });
      CompletableFuture<Void> cancels =
          CompletableFuture.runAsync(
              () -> {
                try {
                  for (int i = 0; i < 40; i++) {
                    WireClient.cancel(proxy.port(), a.keyData());
                    Thread.sleep(10);
                  }
                } catch (Exception e) {
                  throw new IllegalStateException(e);
                }
              });
      int cancelledA = 0;
      while (!cancels.isDone()) {
        Reply r = a.ask("SELECT 1");
        if (r.error() != null) {
          assertThat(r.error().sqlState()).isEqualTo("57014");
          cancelledA++;
        }
      }
      cancels.get(30, TimeUnit.SECONDS);
      System.out.printf("[CancelRequestIT] A's statements cancelled: %d%n", cancelledA);
      Reply br = bRun.get(30, TimeUnit.SECONDS);
      assertThat(br.errors())
          .as("B's statement: %s (A was cancelled %d times)", br, cancelledA)
          .isEmpty();
      assertThat(br.rows()).containsExactly(java.util.List.of("1000"));
    }
  }

  /**
   * The race of a late cancel: A's cancel is on its way to the server (held 2 s in a relay) when
   * A's statement ends by itself and A gives its server connection back. B, next in line for the
   * only server connection, must not get it before the cancel has been delivered; else the cancel
   * lands on B's statement. B's {@code pg_sleep(2.5)} ends normally, after the cancel was taken.
   */
  @Test
  void aCancelStillOnItsWayKeepsTheConnectionFromTheNextClient() throws Exception {
    try (FaultRelay relay = FaultRelay.start("127.0.0.1", pg.primary().port());
        RunningProxy slow =
            RunningProxy.start(
                "pool: { mode: transaction, size: 1, wait_timeout: 20s }\n"
                    + "auth: { type: trust, admin_users: admin }\n"
                    + RunningProxy.database("app", "app", relay.host(), relay.port()));
        WireClient a = login(slow);
        WireClient b = login(slow)) {
      assertThat(a.ask("SELECT 1").errors()).isEmpty(); // the pool's one connection exists
      String marker = "/* cancel-late */";
      a.send(WireClient.query("SELECT pg_sleep(0.5) " + marker));
      awaitActive(marker);
      relay.holdNew(Duration.ofSeconds(2));
      long sent = System.nanoTime();
      WireClient.cancel(slow.port(), a.keyData());
      Reply ra = a.ask(new byte[0]);
      assertThat(ra.errors()).as("A ended before its cancel arrived: %s", ra).isEmpty();
      // A gave the connection back; until the cancel lands it is lent to nobody (SHOW SERVERS).
      assertThat(AdminConsoleIT.console(slow, "admin", "SHOW SERVERS"))
          .singleElement()
          .satisfies(server -> assertThat(server).containsEntry("state", "being_canceled"));
      assertThat(AdminConsoleIT.console(slow, "admin", "SHOW POOLS"))
          .filteredOn(pool -> pool.get("database").equals("app"))
          .singleElement()
          .satisfies(
              pool ->
                  assertThat(pool)
                      .containsEntry("sv_being_canceled", "1")
                      .containsEntry("sv_idle", "0"));
      relay.holdNew(Duration.ZERO);
      Reply rb = b.ask("SELECT pg_sleep(2.5), 'B' /* after-late-cancel */");
      assertThat(rb.errors()).as("B's statement, hit by A's late cancel? %s", rb).isEmpty();
      assertThat(rb.rows()).as("%s", rb).hasSize(1);
      // B waited for the cancel's delivery (about 2 s after it was sent), then slept 2.5 s.
      assertThat(Duration.ofNanos(System.nanoTime() - sent))
          .isGreaterThan(Duration.ofMillis(4_000));
    }
  }

  static WireClient login() throws Exception {
    return login(proxy);
  }

  static WireClient login(RunningProxy through) throws Exception {
    WireClient c = new WireClient(through.port());
    c.startup("postgres", "app");
    assertThat(c.readUntilReady()).isNull();
    return c;
  }

  static void awaitActive(String marker) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
    try (Connection c = Backends.connect(pg.primary());
        PreparedStatement ps =
            c.prepareStatement(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"
                    + " AND pid <> pg_backend_pid() AND strpos(query, ?) > 0")) {
      ps.setString(1, marker);
      while (System.nanoTime() < deadline) {
        try (ResultSet rs = ps.executeQuery()) {
          rs.next();
          if (rs.getInt(1) > 0) {
            return;
          }
        }
        Thread.sleep(10);
      }
    }
    throw new AssertionError("no active statement with " + marker);
  }
}

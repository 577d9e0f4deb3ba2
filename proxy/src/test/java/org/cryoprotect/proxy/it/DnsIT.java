package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.SlowDnsServer;
import org.junit.jupiter.api.Test;

/**
 * Database hosts are resolved without blocking an event loop (DESIGN §2: nothing blocks a loop).
 * The name server answers for one database's host after 5 s: a login to that database waits for it,
 * while queries of another database, and new server connections to it, go on at full speed on the
 * same event loop (one loop: the default on this 2-core machine).
 */
@PgTest
class DnsIT {
  static final String SLOW = "slow.cryoproxy.test";
  static final String FAST = "fast.cryoproxy.test";

  @Test
  void aSlowNameServerAnswerForOneDatabaseDelaysNoOtherDatabase(PgCluster pg) throws Exception {
    pg.createDatabase("app");
    int port = pg.primary().port();
    try (SlowDnsServer dns =
            new SlowDnsServer(Map.of(SLOW, Duration.ofSeconds(5), FAST, Duration.ZERO));
        RunningProxy proxy = start(dns, port)) {
      try (Connection c = proxy.connect("fastdb", "postgres", null)) {
        assertThat(value(c, "SELECT 1")).isEqualTo("1"); // the pool's first connection
      }
      long started = System.nanoTime();
      CompletableFuture<String> slow =
          CompletableFuture.supplyAsync(
              () -> {
                try (Connection c = proxy.connect("slowdb", "postgres", null)) {
                  return value(c, "SELECT current_database()");
                } catch (Exception e) {
                  throw new IllegalStateException(e);
                }
              });
      while (dns.queries(SLOW) == 0 && System.nanoTime() - started < 3_000_000_000L) {
        Thread.sleep(10); // the slow look-up is in flight
      }
      assertThat(dns.queries(SLOW)).as("the slow name was asked for").isPositive();
      List<Long> millis = new ArrayList<>();
      // Eight clients at once: the pool of four opens three more connections to the fast host
      // while the slow answer is outstanding.
      List<CompletableFuture<Long>> fast = new ArrayList<>();
      for (int i = 0; i < 8; i++) {
        fast.add(
            CompletableFuture.supplyAsync(
                () -> {
                  long t0 = System.nanoTime();
                  try (Connection c = proxy.connect("fastdb", "postgres", null)) {
                    for (int q = 0; q < 20; q++) {
                      value(c, "SELECT pg_sleep(0.01), current_database()");
                    }
                  } catch (Exception e) {
                    throw new IllegalStateException(e);
                  }
                  return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
                }));
      }
      for (CompletableFuture<Long> f : fast) {
        millis.add(f.get(30, TimeUnit.SECONDS));
      }
      boolean slowStillWaiting = !slow.isDone();
      assertThat(slow.get(30, TimeUnit.SECONDS)).isEqualTo("app");
      long slowMillis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - started);
      System.out.printf(
          "[DnsIT] fast clients (20 queries each) took %s ms while the slow login waited; the slow"
              + " login took %d ms%n",
          millis, slowMillis);
      assertThat(slowStillWaiting).as("the fast clients finished before the slow answer").isTrue();
      assertThat(millis).allSatisfy(ms -> assertThat(ms).isLessThan(2_500));
      assertThat(slowMillis).isGreaterThanOrEqualTo(4_500);
    }
  }

  static RunningProxy start(SlowDnsServer dns, int port) throws Exception {
    System.setProperty("cryoproxy.dns.servers", dns.address());
    try {
      return RunningProxy.start(
          "pool: { mode: transaction, size: 4, wait_timeout: 20s }\n"
              + "limits: { server_connect_timeout: 15s }\n"
              + "health: { interval: 1h }\n" // its JDBC probes use the JDK's resolver
              + RunningProxy.database("fastdb", "app", FAST, port)
              + RunningProxy.database("slowdb", "app", SLOW, port).replace("databases:\n", ""));
    } finally {
      System.clearProperty("cryoproxy.dns.servers");
    }
  }

  static String value(Connection c, String sql) throws Exception {
    try (Statement s = c.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      rs.next();
      return rs.getString(rs.getMetaData().getColumnCount());
    }
  }
}

package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.it.TpcbChaosIT.ToolRun;
import org.cryoprotect.proxy.testing.Backends;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.Exposition;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * A node's circuit breaker counts what shows the node is unwell, never what one client or an
 * administrator did to one backend. Both tests run with the default breaker settings (the point is
 * that they no longer trip it) and a pool of 8:
 *
 * <ul>
 *   <li>{@code pgbench -M extended -c 32} (TPC-B) while two busy server backends per second are
 *       terminated: the breaker never opens, and no pgbench client is lost to anything but the
 *       termination of its own backend;
 *   <li>1,000 logins with a bad setting ({@code options=-c work_mem=bogus}) beside {@code pgbench
 *       -S -c 8}: every login is refused with PostgreSQL's own 22023, pgbench sees no error, the
 *       breaker stays closed, and the database sees no more server sessions than the pool size.
 * </ul>
 */
@PgTest
class NodeBlameIT {
  static final int POOL = 8;
  static PgCluster pg;

  @BeforeAll
  static void prepare(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("blame");
    TpcbChaosIT.pgbenchInit(pg, "blame");
  }

  static RunningProxy proxy() throws Exception {
    return RunningProxy.start(
        "pool: { mode: transaction, size: "
            + POOL
            + ", wait_timeout: 10s }\n"
            + "health: { interval: 500ms }\n"
            + RunningProxy.database("blame", "blame", "127.0.0.1", pg.primary().port()));
  }

  static List<String> pgbench(int port, String... args) {
    List<String> command = new ArrayList<>();
    command.add(ClientTools.require("pgbench").toString());
    command.addAll(List.of(args));
    command.addAll(List.of("-h", "127.0.0.1", "-p", String.valueOf(port), "-U", "postgres"));
    command.add("blame");
    return command;
  }

  @Test
  void terminatedBackendsDoNotOpenTheBreakerOfAHealthyNode() throws Exception {
    AtomicInteger terminated = new AtomicInteger();
    try (RunningProxy proxy = proxy()) {
      long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(14);
      CompletableFuture<ToolRun> bench =
          CompletableFuture.supplyAsync(
              () -> {
                try {
                  return ToolRun.run(
                      pgbench(proxy.port(), "-M", "extended", "-c", "32", "-j", "2", "-T", "12"),
                      60);
                } catch (Exception e) {
                  throw new IllegalStateException(e);
                }
              });
      Thread.sleep(1_500); // pgbench's clients are in and the pool is busy
      try (Connection c = Backends.connect(pg.primary())) {
        while (System.nanoTime() < until && !bench.isDone()) {
          List<Integer> busy = busyBackends(c, 2);
          Backends.terminate(c, busy);
          terminated.addAndGet(busy.size());
          Thread.sleep(1_000);
        }
      }
      ToolRun run = bench.get(90, TimeUnit.SECONDS);
      Exposition metrics = metrics(proxy);
      double opened = openings(metrics);
      int aborted = aborted(run.output());
      long breakerErrors = run.output().lines().filter(l -> l.contains("circuit breaker")).count();
      System.out.printf(
          "[NodeBlameIT] pgbench -M extended -c 32 over a pool of %d: %d backends terminated,"
              + " %d clients aborted, %d transactions; breaker openings %.0f, breaker errors %d%n",
          POOL, terminated.get(), aborted, processed(run.output()), opened, breakerErrors);
      assertThat(terminated.get()).isGreaterThanOrEqualTo(10);
      assertThat(opened).as(run.output()).isZero();
      assertThat(breakerErrors).as(run.output()).isZero();
      // A terminated backend fails the one client whose transaction it ran, at most.
      assertThat(aborted).as(run.output()).isLessThanOrEqualTo(terminated.get());
      assertThat(processed(run.output())).isPositive();
    }
  }

  @Test
  void loginsWithABadSettingGetTheServersErrorAndHarmNoOne() throws Exception {
    try (RunningProxy proxy = proxy();
        Connection watch = Backends.connect(pg.primary())) {
      long sessionsBefore = sessions(watch);
      CompletableFuture<ToolRun> bench =
          CompletableFuture.supplyAsync(
              () -> {
                try {
                  return ToolRun.run(
                      pgbench(proxy.port(), "-S", "-c", "8", "-j", "2", "-T", "12"), 90);
                } catch (Exception e) {
                  throw new IllegalStateException(e);
                }
              });
      Thread.sleep(1_000);
      Map<String, Integer> refusals = new TreeMap<>();
      long start = System.nanoTime();
      for (int i = 0; i < 1_000; i++) {
        try (Connection c =
            proxy.connect("blame", "postgres", null, "options", "-c work_mem=bogus")) {
          refusals.merge("logged in", 1, Integer::sum);
        } catch (SQLException e) {
          refusals.merge(e.getSQLState() + " " + e.getMessage(), 1, Integer::sum);
        }
      }
      long loginMillis = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start);
      boolean overlapped = !bench.isDone();
      ToolRun run = bench.get(90, TimeUnit.SECONDS);
      Thread.sleep(2_000); // backends report their session counts within a second of going idle
      long sessionsOpened = sessions(watch) - sessionsBefore;
      double opened = openings(metrics(proxy));
      System.out.printf(
          "[NodeBlameIT] 1,000 logins with work_mem=bogus in %d ms beside pgbench -S -c 8"
              + " (overlapped: %s): %s; pgbench exit %d, %d transactions, %d failed; server"
              + " sessions opened %d (pool %d); breaker openings %.0f%n",
          loginMillis,
          overlapped,
          refusals,
          run.exit(),
          processed(run.output()),
          failed(run.output()),
          sessionsOpened,
          POOL,
          opened);
      assertThat(overlapped).as("the logins ran while pgbench did").isTrue();
      assertThat(refusals)
          .containsOnlyKeys("22023 FATAL: invalid value for parameter \"work_mem\": \"bogus\"")
          .containsValue(1_000);
      assertThat(run.exit()).as(run.output()).isZero();
      assertThat(failed(run.output())).as(run.output()).isZero();
      assertThat(processed(run.output())).isPositive();
      assertThat(opened).isZero();
      // The pool's own connections, and the health probe's one.
      assertThat(sessionsOpened).isLessThanOrEqualTo(POOL + 1);
    }
  }

  /** Up to {@code n} backends of the test database running a pgbench transaction right now. */
  static List<Integer> busyBackends(Connection c, int n) throws SQLException {
    List<Integer> pids = new ArrayList<>();
    try (Statement s = c.createStatement();
        ResultSet rs =
            s.executeQuery(
                "SELECT pid FROM pg_stat_activity WHERE datname = 'blame'"
                    + " AND backend_type = 'client backend' AND state <> 'idle'"
                    + " AND application_name NOT LIKE 'cryoproxy-%'"
                    + " AND pid <> pg_backend_pid() ORDER BY random() LIMIT "
                    + n)) {
      while (rs.next()) {
        pids.add(rs.getInt(1));
      }
    }
    return pids;
  }

  /** Sessions ever established to the test database (PostgreSQL 14 and later count them). */
  static long sessions(Connection c) throws SQLException {
    try (Statement s = c.createStatement();
        ResultSet rs =
            s.executeQuery("SELECT sessions FROM pg_stat_database WHERE datname = 'blame'")) {
      rs.next();
      long sessions = rs.getLong(1);
      s.execute("SELECT pg_stat_clear_snapshot()");
      return sessions;
    }
  }

  static Exposition metrics(RunningProxy proxy) throws Exception {
    HttpResponse<String> response =
        HttpClient.newHttpClient()
            .send(
                HttpRequest.newBuilder(proxy.adminUri("/metrics"))
                    .timeout(Duration.ofSeconds(10))
                    .build(),
                HttpResponse.BodyHandlers.ofString());
    return Exposition.parse(response.body());
  }

  static double openings(Exposition metrics) {
    return metrics.sum("cryoproxy_breaker_transitions_total", "to", "open");
  }

  /** Clients pgbench aborted: it says "client N aborted ..." (or "client N script M aborted"). */
  static int aborted(String output) {
    Matcher m = TpcbChaosIT.ABORTED.matcher(output);
    int n = 0;
    while (m.find()) {
      n++;
    }
    return n;
  }

  static int processed(String output) {
    return count(output, "number of transactions actually processed: (\\d+)", 0);
  }

  static int failed(String output) {
    return count(output, "number of failed transactions: (\\d+)", 0);
  }

  private static int count(String output, String regex, int otherwise) {
    Matcher m = Pattern.compile(regex).matcher(output);
    return m.find() ? Integer.parseInt(m.group(1)) : otherwise;
  }
}

package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.Backends;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.cryoprotect.proxy.testing.WireClient.Reply;
import org.junit.jupiter.api.Test;

/**
 * The acceptance chaos run of "atomic transactions under transaction pooling": a TPC-B load through
 * a pool of 8 (pgbench's builtin tpcb-like with 28 clients, restarted whenever its clients abort,
 * plus raw clients that go on after errors as a psql script without ON_ERROR_STOP does), while a
 * direct connection terminates one to three of the proxy's server backends every second and the
 * primary is restarted once. Whatever failed, every transaction applied all or nothing: the sums of
 * the account, teller and branch balances and of the history's deltas stay equal.
 */
@PgTest
class TpcbChaosIT {
  static final long RUN_SECONDS = Long.getLong("cryoproxy.chaos.seconds", 25);
  static final int PGBENCH_CLIENTS = 28;
  static final int RAW_CLIENTS = 3;
  static final int POOL_SIZE = 8;
  static final String RAW_APPLICATION = "tpcb-raw";

  @Test
  void tpcbBalancesHoldUnderTerminatedBackendsAndAPrimaryRestart(PgCluster pg) throws Exception {
    Path pgbench = ClientTools.require("pgbench");
    pg.createDatabase("chaos");
    pgbenchInit(pg, "chaos");

    String yaml =
        "pool: { mode: transaction, size: "
            + POOL_SIZE
            + ", wait_timeout: 10s }\n"
            + "limits: { server_connect_timeout: 2s }\n"
            + "health: { interval: 500ms, timeout: 1s }\n"
            // The default breaker: terminated backends must not open it, and the restart is
            // ridden out by the connect retries.
            + "resilience: { retry: { attempts: 10, backoff: 50ms, max_backoff: 500ms } }\n"
            + RunningProxy.database("chaos", "chaos", "127.0.0.1", pg.primary().port());
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(RUN_SECONDS);
    Stats stats = new Stats();
    try (RunningProxy proxy = RunningProxy.start(yaml)) {
      ExecutorService threads = Executors.newFixedThreadPool(RAW_CLIENTS + 2);
      List<Future<?>> work = new ArrayList<>();
      work.add(threads.submit(() -> pgbenchLoop(pgbench, proxy.port(), deadline, stats)));
      for (int i = 0; i < RAW_CLIENTS; i++) {
        int seed = i;
        work.add(threads.submit(() -> rawClient(proxy.port(), seed, deadline, stats)));
      }
      work.add(threads.submit(() -> chaos(pg, deadline, stats)));
      for (Future<?> f : work) {
        f.get(RUN_SECONDS + 90, TimeUnit.SECONDS);
      }
      threads.shutdown();
    }

    List<String> sums =
        pg.primary()
            .sql(
                "chaos",
                "SELECT (SELECT sum(abalance) FROM pgbench_accounts),"
                    + " (SELECT sum(tbalance) FROM pgbench_tellers),"
                    + " (SELECT sum(bbalance) FROM pgbench_branches),"
                    + " (SELECT coalesce(sum(delta), 0) FROM pgbench_history),"
                    + " (SELECT count(*) FROM pgbench_history)")
            .get(0);
    String report =
        String.format(
            "[TpcbChaosIT] sums accounts=%s tellers=%s branches=%s history=%s (%s history rows);"
                + " backends terminated %d, primary restarts %d; pgbench runs %d, transactions %d,"
                + " failed %d, aborted clients %d; raw transactions begun %d, committed %d,"
                + " errors %d (by SQLSTATE %s), failed logins and transactions %d, reconnects %d,"
                + " 25P01 notices %d; client errors %d against the bound %d",
            sums.get(0),
            sums.get(1),
            sums.get(2),
            sums.get(3),
            sums.get(4),
            stats.terminated.get(),
            stats.restarts.get(),
            stats.pgbenchRuns.get(),
            stats.pgbenchTransactions.get(),
            stats.pgbenchFailed.get(),
            stats.pgbenchAborted.get(),
            stats.rawBegun.get(),
            stats.rawCommitted.get(),
            stats.rawErrors.get(),
            stats.errorCodes,
            stats.rawFailed.get(),
            stats.reconnects.get(),
            stats.noTransaction.size(),
            stats.clientErrors(),
            stats.terminated.get() + POOL_SIZE);
    System.out.println(report);
    stats.problems.forEach(p -> System.out.println("[TpcbChaosIT] " + p));

    assertThat(stats.terminated.get()).as(report).isPositive();
    assertThat(stats.restarts.get()).as(report).isEqualTo(1);
    assertThat(Long.parseLong(sums.get(4))).as(report).isPositive();
    assertThat(List.of(sums.get(1), sums.get(2), sums.get(3)))
        .as("TPC-B invariant, tellers, branches and history against accounts: " + report)
        .containsOnly(sums.get(0));
    assertThat(stats.noTransaction)
        .as("a transaction the client began was gone before its END: " + report)
        .isEmpty();
    assertThat(stats.clientErrors())
        .as("client errors, at most one per terminated backend plus the pool size: " + report)
        .isLessThanOrEqualTo(stats.terminated.get() + POOL_SIZE);
    assertThat(stats.breakerWhileUp)
        .as("clients refused by the breaker while the primary was up: " + report)
        .isEmpty();
  }

  /** {@code pgbench -i -s 1} of {@code database} directly on the primary. */
  static void pgbenchInit(PgCluster pg, String database) throws Exception {
    ToolRun init =
        ToolRun.run(
            List.of(
                ClientTools.require("pgbench").toString(),
                "-i",
                "-s",
                "1",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                String.valueOf(pg.primary().port()),
                "-U",
                "postgres",
                database),
            120);
    assertThat(init.exit()).as(init.output()).isZero();
  }

  static final class Stats {
    final AtomicInteger terminated = new AtomicInteger();
    final AtomicInteger restarts = new AtomicInteger();
    final AtomicInteger pgbenchRuns = new AtomicInteger();
    final AtomicLong pgbenchTransactions = new AtomicLong();
    final AtomicLong pgbenchFailed = new AtomicLong();
    final AtomicLong pgbenchAborted = new AtomicLong();
    final AtomicLong rawBegun = new AtomicLong();
    final AtomicLong rawCommitted = new AtomicLong();
    final AtomicLong rawErrors = new AtomicLong();
    final AtomicLong rawFailed = new AtomicLong(); // logins and transactions that saw an error
    volatile long restartBegan;
    volatile long restartEnded;
    final ConcurrentLinkedQueue<String> breakerWhileUp = new ConcurrentLinkedQueue<>();
    final AtomicLong reconnects = new AtomicLong();
    final Map<String, AtomicLong> errorCodes = new java.util.concurrent.ConcurrentSkipListMap<>();
    final ConcurrentLinkedQueue<String> noTransaction = new ConcurrentLinkedQueue<>();
    final ConcurrentLinkedQueue<String> problems = new ConcurrentLinkedQueue<>();

    void error(Message e) {
      rawErrors.incrementAndGet();
      errorCodes
          .computeIfAbsent(String.valueOf(e.sqlState()), k -> new AtomicLong())
          .incrementAndGet();
      breaker(e.toString());
    }

    /** Notes an error of the breaker unless the primary was down (or restarting) then. */
    void breaker(String text) {
      if (!text.contains("circuit breaker")) {
        return;
      }
      long now = System.nanoTime();
      boolean down = restartBegan != 0 && (restartEnded == 0 || now - restartEnded < 0);
      if (!down) {
        breakerWhileUp.add(text);
      }
    }

    /** What the clients saw fail: one per failed login or transaction, each pgbench abort. */
    long clientErrors() {
      return rawFailed.get() + pgbenchAborted.get() + pgbenchFailed.get();
    }
  }

  // ------------------------------------------------------------------ load

  static final Pattern PROCESSED =
      Pattern.compile("number of transactions actually processed: (\\d+)");
  static final Pattern FAILED = Pattern.compile("number of failed transactions: (\\d+)");
  static final Pattern ABORTED = Pattern.compile("client \\d+ (script \\d+ )?aborted");

  /** pgbench tpcb-like through the proxy, started again whenever it ends, until the deadline. */
  static Void pgbenchLoop(Path pgbench, int port, long deadline, Stats stats) throws Exception {
    while (true) {
      long left = TimeUnit.NANOSECONDS.toSeconds(deadline - System.nanoTime());
      if (left < 2) {
        return null;
      }
      ToolRun run =
          ToolRun.run(
              List.of(
                  pgbench.toString(),
                  "-n",
                  "-c",
                  String.valueOf(PGBENCH_CLIENTS),
                  "-j",
                  "2",
                  "-T",
                  // pgbench ends a client at its first error: short runs bring all 28 back.
                  String.valueOf(Math.min(left, 5)),
                  "-h",
                  "127.0.0.1",
                  "-p",
                  String.valueOf(port),
                  "-U",
                  "postgres",
                  "chaos"),
              left + 60);
      stats.pgbenchRuns.incrementAndGet();
      stats.pgbenchTransactions.addAndGet(first(PROCESSED, run.output()));
      stats.pgbenchFailed.addAndGet(first(FAILED, run.output()));
      Matcher aborted = ABORTED.matcher(run.output());
      while (aborted.find()) {
        stats.pgbenchAborted.incrementAndGet();
      }
      run.output().lines().forEach(stats::breaker);
      run.output()
          .lines()
          .filter(l -> l.contains("aborted") || l.contains("actually processed"))
          .limit(2)
          .forEach(l -> stats.problems.add("pgbench: " + l));
      if (run.exit() != 0) {
        Thread.sleep(100); // all its clients aborted (or it could not connect): again
      }
    }
  }

  private static long first(Pattern p, String text) {
    Matcher m = p.matcher(text);
    return m.find() ? Long.parseLong(m.group(1)) : 0;
  }

  /**
   * TPC-B as separate simple queries, going on after errors as psql without ON_ERROR_STOP does,
   * unless the BEGIN left it idle (ReadyForQuery 'I': no transaction, it skips the rest). A closed
   * connection is opened again. An END answered with 25P01 "there is no transaction in progress" is
   * recorded: the transaction the client began was lost under it.
   */
  static Void rawClient(int port, int seed, long deadline, Stats stats) {
    Random random = new Random(seed);
    WireClient c = null;
    while (System.nanoTime() < deadline) {
      try {
        if (c == null) {
          c = new WireClient(port);
          c.timeout(30_000);
          Map<String, String> params = WireClient.params("postgres", "chaos");
          params.put("application_name", RAW_APPLICATION);
          c.send(WireClient.startupPacket(3 << 16, params));
          Message error = c.readUntilReady();
          if (error != null) {
            stats.error(error);
            stats.rawFailed.incrementAndGet();
            c.close();
            c = null;
            Thread.sleep(100);
            continue;
          }
        }
        int aid = 1 + random.nextInt(100_000);
        int bid = 1;
        int tid = 1 + random.nextInt(10);
        int delta = random.nextInt(10_001) - 5_000;
        Reply begin = c.ask("BEGIN");
        if (begin.closed()) {
          c.close();
          c = null;
          stats.reconnects.incrementAndGet();
          continue;
        }
        begin.errors().forEach(stats::error);
        // 'E': the BEGIN's server connection was lost, and the transaction it opened failed with
        // it; as psql goes on, so does this client (25P02 for the rest, END answered ROLLBACK).
        boolean failed = begin.status() == 'E';
        if (begin.status() != 'T' && !failed) {
          stats.rawFailed.incrementAndGet();
          Thread.sleep(50);
          continue;
        }
        if (!failed) {
          stats.rawBegun.incrementAndGet();
        }
        String[] body = {
          "UPDATE pgbench_accounts SET abalance = abalance + " + delta + " WHERE aid = " + aid,
          "SELECT abalance FROM pgbench_accounts WHERE aid = " + aid,
          "UPDATE pgbench_tellers SET tbalance = tbalance + " + delta + " WHERE tid = " + tid,
          "UPDATE pgbench_branches SET bbalance = bbalance + " + delta + " WHERE bid = " + bid,
          "INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES ("
              + tid
              + ", "
              + bid
              + ", "
              + aid
              + ", "
              + delta
              + ", CURRENT_TIMESTAMP)",
          "END"
        };
        boolean closed = false;
        for (String sql : body) {
          Reply r = c.ask(sql);
          r.errors().forEach(stats::error);
          failed |= !r.errors().isEmpty() || r.closed();
          for (Message n : r.notices()) {
            if ("25P01".equals(n.sqlState())) {
              stats.noTransaction.add("client " + seed + ": " + sql + " -> " + r);
            }
          }
          if (sql.equals("END") && r.tags().contains("COMMIT") && r.errors().isEmpty()) {
            stats.rawCommitted.incrementAndGet();
          }
          if (r.closed()) {
            closed = true;
            break;
          }
        }
        if (failed) {
          stats.rawFailed.incrementAndGet();
        }
        if (closed) {
          c.close();
          c = null;
          stats.reconnects.incrementAndGet();
        }
      } catch (IOException e) {
        stats.problems.add("raw client " + seed + ": " + e);
        closeQuietly(c);
        c = null;
        stats.reconnects.incrementAndGet();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        break;
      }
    }
    closeQuietly(c);
    return null;
  }

  private static void closeQuietly(WireClient c) {
    if (c != null) {
      try {
        c.close();
      } catch (IOException ignored) {
        // already gone
      }
    }
  }

  // ------------------------------------------------------------------ chaos

  /**
   * Every second, terminates one to three server backends of the proxy (busy ones first: running a
   * statement or idle in a transaction), never the proxy's health probes nor this connection; once,
   * about 40 % into the run, restarts the primary.
   */
  static Void chaos(PgCluster pg, long deadline, Stats stats) throws Exception {
    Random random = new Random(7);
    long start = System.nanoTime();
    long restartAt = start + (deadline - start) * 2 / 5;
    Connection c = null;
    while (System.nanoTime() < deadline - TimeUnit.SECONDS.toNanos(2)) {
      Thread.sleep(1_000);
      if (stats.restarts.get() == 0 && System.nanoTime() > restartAt) {
        closeQuietly(c);
        c = null;
        stats.restartBegan = System.nanoTime();
        pg.primary().restart();
        stats.restartEnded = System.nanoTime();
        stats.restarts.incrementAndGet();
        continue;
      }
      try {
        if (c == null) {
          c = Backends.connect(pg.primary());
        }
        List<Integer> pids = new ArrayList<>();
        try (Statement s = c.createStatement();
            ResultSet rs =
                s.executeQuery(
                    "SELECT pid FROM pg_stat_activity WHERE datname = 'chaos'"
                        + " AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
                        + " AND application_name NOT LIKE 'cryoproxy-%'"
                        + " AND application_name <> '"
                        + Backends.APPLICATION
                        + "' ORDER BY state NOT IN ('active', 'idle in transaction'), random()"
                        + " LIMIT "
                        + (1 + random.nextInt(3)))) {
          while (rs.next()) {
            pids.add(rs.getInt(1));
          }
        }
        Backends.terminate(c, pids);
        stats.terminated.addAndGet(pids.size());
      } catch (SQLException e) {
        stats.problems.add("chaos: " + e.getMessage());
        closeQuietly(c);
        c = null;
      }
    }
    closeQuietly(c);
    return null;
  }

  private static void closeQuietly(Connection c) {
    if (c != null) {
      try {
        c.close();
      } catch (SQLException ignored) {
        // already gone
      }
    }
  }

  /** A process run with a deadline, output captured (stdout and stderr together). */
  record ToolRun(int exit, String output) {
    static ToolRun run(List<String> command, long timeoutSeconds)
        throws IOException, InterruptedException {
      ProcessBuilder builder = new ProcessBuilder(command).redirectErrorStream(true);
      builder.environment().remove("PGOPTIONS");
      builder.environment().put("PGSSLMODE", "disable");
      builder.environment().put("PGCONNECT_TIMEOUT", "10");
      Process process = builder.start();
      StringBuilder out = new StringBuilder();
      Thread reader =
          new Thread(
              () -> {
                try {
                  out.append(
                      new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8));
                } catch (IOException ignored) {
                  // the process was killed
                }
              });
      reader.start();
      if (!process.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor();
      }
      reader.join(5_000);
      return new ToolRun(process.isAlive() ? -1 : process.exitValue(), out.toString());
    }
  }
}

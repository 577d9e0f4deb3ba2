package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.io.EOFException;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryMXBean;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.pool.PoolClient;
import org.cryoprotect.proxy.pool.ServerPool;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.junit.jupiter.api.Test;

/**
 * What clients can make the proxy hold stays bounded (issue 18): 200 clients each prepare 500
 * distinct named statements per round against a per-client bound of 50 (the rest are refused with
 * 54000, the session goes on, and every answer below the bound is checked), while 100 clients log
 * in as made-up role names in trust mode. Per-client statements, each (database, role) registry,
 * and the pools of made-up roles must stay within their bounds, and the heap with them. {@code
 * cryoproxy.bounds.seconds} (10) sets the length; the figures in the README are from 60 s.
 */
@PgTest
class BoundsIT {
  static final int STATEMENT_CLIENTS = 200;
  static final int STATEMENTS = 500;
  static final int PER_CLIENT = 50;
  static final int ROLE_CLIENTS = 100;

  @Test
  void statementsRegistriesAndPoolsStayBounded(PgCluster pg) throws Exception {
    long seconds = Long.getLong("cryoproxy.bounds.seconds", 10);
    pg.createDatabase("app");
    MemoryMXBean memory = ManagementFactory.getMemoryMXBean();
    try (RunningProxy proxy =
        RunningProxy.start(
            "pool: { mode: transaction, size: 8, wait_timeout: 30s, server_idle_timeout: 2s,"
                + " prepared_statements_per_server: 200 }\n"
                + "limits: { max_client_prepared_statements: "
                + PER_CLIENT
                + " }\n"
                + RunningProxy.database("app", "app", "127.0.0.1", pg.primary().port()))) {
      System.gc();
      long heapBefore = memory.getHeapMemoryUsage().getUsed();
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
      ExecutorService threads = Executors.newFixedThreadPool(STATEMENT_CLIENTS + ROLE_CLIENTS);
      ConcurrentLinkedQueue<String> wrong = new ConcurrentLinkedQueue<>();
      AtomicLong answered = new AtomicLong();
      AtomicLong refused = new AtomicLong();
      AtomicLong roleLogins = new AtomicLong();
      List<Future<?>> runs = new ArrayList<>();
      for (int c = 0; c < STATEMENT_CLIENTS; c++) {
        int client = c;
        runs.add(
            threads.submit(
                () -> {
                  prepareRounds(proxy, client, deadline, answered, refused, wrong);
                  return null;
                }));
      }
      for (int c = 0; c < ROLE_CLIENTS; c++) {
        runs.add(
            threads.submit(
                () -> {
                  madeUpRoles(proxy, deadline, roleLogins, wrong);
                  return null;
                }));
      }
      int maxPools = 0;
      int maxRegistry = 0;
      int maxPerClient = 0;
      long maxHeap = 0;
      while (System.nanoTime() < deadline) {
        Thread.sleep(500);
        maxPools = Math.max(maxPools, proxy.server().pools().all().size());
        maxRegistry = Math.max(maxRegistry, proxy.server().pools().preparedCount());
        for (ServerPool pool : proxy.server().pools().all()) {
          for (PoolClient client : pool.clients()) {
            maxPerClient = Math.max(maxPerClient, client.preparedStatements());
          }
        }
        maxHeap = Math.max(maxHeap, memory.getHeapMemoryUsage().getUsed());
      }
      for (Future<?> run : runs) {
        run.get(120, TimeUnit.SECONDS);
      }
      threads.shutdown();
      // Made-up roles' pools are forgotten after two idle timeouts and a maintenance pass.
      await().atMost(Duration.ofSeconds(20)).until(() -> proxy.server().pools().all().size() <= 1);
      int poolsAfter = proxy.server().pools().all().size();
      System.gc();
      long heapAfter = memory.getHeapMemoryUsage().getUsed();
      System.out.printf(
          "[BoundsIT] %d s: %d answers checked, %d Parses refused (54000), %d made-up role"
              + " logins; max pools %d (after: %d), max statements in the registries %d, max per"
              + " client %d; heap used before %d MiB, max %d MiB, after GC %d MiB%n",
          seconds,
          answered.get(),
          refused.get(),
          roleLogins.get(),
          maxPools,
          poolsAfter,
          maxRegistry,
          maxPerClient,
          heapBefore >> 20,
          maxHeap >> 20,
          heapAfter >> 20);
      assertThat(wrong).as("wrong answers").isEmpty();
      assertThat(answered.get()).isGreaterThan(STATEMENT_CLIENTS);
      assertThat(refused.get()).isPositive();
      assertThat(maxPerClient).isLessThanOrEqualTo(PER_CLIENT);
      assertThat(maxRegistry).isLessThanOrEqualTo(10_000); // Pools.REGISTRY_BOUND, one role
      assertThat(poolsAfter).as("pools of made-up roles are forgotten").isLessThanOrEqualTo(1);
      assertThat(heapAfter - heapBefore).as("heap kept after the run").isLessThan(128L << 20);
    }
  }

  /**
   * Rounds of 500 Parse/Bind/Execute/Sync batches with texts no other client or round uses; the
   * first 50 are answered (checked), the rest refused with 54000; then the client closes its
   * statements and starts the next round.
   */
  static void prepareRounds(
      RunningProxy proxy,
      int client,
      long deadline,
      AtomicLong answered,
      AtomicLong refused,
      ConcurrentLinkedQueue<String> wrong)
      throws Exception {
    try (WireClient c = new WireClient(proxy.port())) {
      c.timeout(60_000);
      c.startup("postgres", "app");
      assertThat(c.readUntilReady()).isNull();
      // The first ten clients pass the bound in their first round whatever the deadline: on a slow
      // machine a short run would otherwise end before any client reached it.
      boolean mustPass = client < 10;
      for (int round = 0; round == 0 && mustPass || System.nanoTime() < deadline; round++) {
        for (int i = 0;
            i < STATEMENTS
                && (System.nanoTime() < deadline || round == 0 && mustPass && i <= PER_CLIENT);
            i++) {
          int value = (client * 1_000 + round) * 1_000 + i;
          List<Message> reply =
              c.exchange(
                  WireClient.parse("s" + i, "SELECT " + value + "::bigint + $1::int"),
                  WireClient.bind("", "s" + i, "1"),
                  WireClient.execute("", 0),
                  WireClient.sync());
          Message error = reply.stream().filter(m -> m.type() == 'E').findFirst().orElse(null);
          if (i < PER_CLIENT) {
            List<String> row =
                reply.stream()
                    .filter(m -> m.type() == 'D')
                    .findFirst()
                    .map(Message::texts)
                    .orElse(null);
            if (error != null || row == null || !row.equals(List.of(String.valueOf(value + 1)))) {
              wrong.add("client " + client + " s" + i + ": " + reply);
            } else {
              answered.incrementAndGet();
            }
          } else if (error == null || !"54000".equals(error.sqlState())) {
            wrong.add("client " + client + " s" + i + " past the bound: " + reply);
          } else {
            refused.incrementAndGet();
          }
        }
        List<byte[]> closes = new ArrayList<>();
        for (int i = 0; i < PER_CLIENT; i++) {
          closes.add(WireClient.close('S', "s" + i));
        }
        closes.add(WireClient.sync());
        c.exchange(closes.toArray(new byte[0][]));
      }
    }
  }

  /** Logins as role names PostgreSQL does not have: each is refused, each makes a pool. */
  static void madeUpRoles(
      RunningProxy proxy, long deadline, AtomicLong logins, ConcurrentLinkedQueue<String> wrong)
      throws Exception {
    while (System.nanoTime() < deadline) {
      String role = "made_up_" + ThreadLocalRandom.current().nextInt(1_000_000_000);
      try (WireClient c = new WireClient(proxy.port())) {
        c.startup(role, "app");
        Message error = c.readError();
        if (!"28000".equals(error.sqlState())) {
          wrong.add("login as " + role + ": " + error);
        }
        logins.incrementAndGet();
      } catch (EOFException e) {
        wrong.add("login as " + role + ": closed without an error");
      }
      Thread.sleep(1_000); // about 100 made-up roles a second in all
    }
  }
}

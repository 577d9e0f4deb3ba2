package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.embedded.PgNode;
import org.cryoprotect.proxy.testing.Exposition;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Read routing against a real primary and two streaming replicas (issue 4, acceptance 1, 2, 3 and
 * 7). Every query also returns {@code current_setting('port')}, so each answer names the node that
 * ran it; {@code pg_stat_database} on each node confirms the totals.
 */
@PgTest(replicas = 2)
class RoutingIT {
  private static final HttpClient HTTP = HttpClient.newHttpClient();
  private static final String READ =
      "SELECT v, current_setting('port') FROM routing_it WHERE id = ?";

  @BeforeAll
  static void schema(PgCluster pg) {
    pg.primary().sql("CREATE TABLE routing_it (id int PRIMARY KEY, v text)");
    pg.primary().sql("INSERT INTO routing_it SELECT g, 'v' || g FROM generate_series(1, 100) g");
    pg.primary().sql("CREATE TABLE ryw_it (id int PRIMARY KEY, v text)");
    pg.primary().sql("CREATE SEQUENCE routing_seq");
    pg.primary().sql("CREATE TABLE static_it (id int PRIMARY KEY, v text)");
    pg.primary().sql("INSERT INTO static_it SELECT g, 's' || g FROM generate_series(1, 1000) g");
    pg.primary().sql("CREATE TABLE mixed_it (client int, seq int, PRIMARY KEY (client, seq))");
    pg.primary().sql("CREATE TABLE written_by_function (at timestamptz)");
    pg.primary()
        .sql(
            "CREATE FUNCTION write_row() RETURNS int LANGUAGE plpgsql VOLATILE AS"
                + " $$ BEGIN INSERT INTO written_by_function VALUES (now()); RETURN 1; END $$");
    pg.awaitReplication();
  }

  private static RunningProxy start(PgCluster pg, String routing) throws Exception {
    return start(pg, routing, 8);
  }

  private static RunningProxy start(PgCluster pg, String routing, int poolSize) throws Exception {
    StringBuilder yaml =
        new StringBuilder()
            .append("pool: { mode: transaction, size: ")
            .append(poolSize)
            .append(", wait_timeout: 60s }\n")
            .append("health: { interval: 200ms }\n")
            .append("databases:\n  app:\n    dbname: postgres\n")
            .append("    primary: { host: ")
            .append(pg.primary().host())
            .append(", port: ")
            .append(pg.primary().port())
            .append(" }\n    replicas:\n");
    for (PgNode r : pg.replicas()) {
      yaml.append("      - { host: ").append(r.host()).append(", port: ").append(r.port());
      yaml.append(" }\n");
    }
    yaml.append("    routing: ").append(routing).append("\n");
    RunningProxy proxy = RunningProxy.start(yaml.toString());
    // The first probes load HikariCP and pgJDBC; until they answer, everything reads the primary.
    await()
        .atMost(Duration.ofSeconds(20))
        .until(
            () ->
                proxy.server().health().nodes().stream()
                    .allMatch(h -> h.usable() && h.checkedAt() != null));
    return proxy;
  }

  private static String port(PgNode node) {
    return Integer.toString(node.port());
  }

  private static Set<String> replicaPorts(PgCluster pg) {
    return Set.of(port(pg.replica(0)), port(pg.replica(1)));
  }

  /** Runs {@link #READ} for row {@code id}; returns the port of the node that answered. */
  private static String read(Connection c, int id) throws SQLException {
    try (PreparedStatement ps = c.prepareStatement(READ)) {
      ps.setInt(1, id);
      try (ResultSet rs = ps.executeQuery()) {
        assertThat(rs.next()).as("row %d", id).isTrue();
        return rs.getString(2);
      }
    }
  }

  private static String scalarPort(Connection c, String sql) throws SQLException {
    try (Statement st = c.createStatement();
        ResultSet rs = st.executeQuery(sql)) {
      assertThat(rs.next()).isTrue();
      return rs.getString("port");
    }
  }

  /** Waits until the proxy knows current_setting is not volatile: the reads reach a replica. */
  private static void warmUp(Connection c, PgCluster pg) {
    await()
        .atMost(Duration.ofSeconds(10))
        .pollInterval(Duration.ofMillis(50))
        .until(() -> replicaPorts(pg).contains(read(c, 1)));
  }

  private static Map<String, Long> commits(PgCluster pg) {
    Map<String, Long> byPort = new HashMap<>();
    for (PgNode node : pg.nodes()) {
      byPort.put(
          port(node),
          Long.parseLong(
              node.queryString(
                  "SELECT xact_commit FROM pg_stat_database WHERE datname = 'postgres'")));
    }
    return byPort;
  }

  private static Exposition metrics(RunningProxy proxy) throws Exception {
    HttpResponse<String> response =
        HTTP.send(
            HttpRequest.newBuilder(proxy.adminUri("/metrics")).build(),
            HttpResponse.BodyHandlers.ofString());
    return Exposition.parse(response.body());
  }

  // ---------------------------------------------------------------- acceptance 1

  @Test
  void readsLandOnReplicasAndWritesOnThePrimary(PgCluster pg) throws Exception {
    String primary = port(pg.primary());
    try (RunningProxy proxy = start(pg, "{ read_your_writes: off }");
        Connection c = proxy.connect("app", "postgres", null)) {
      warmUp(c, pg);

      // Autocommit on: single SELECTs go to the replicas, both of them; writes to the primary.
      Map<String, Integer> served = new HashMap<>();
      for (int i = 1; i <= 100; i++) {
        served.merge(read(c, i), 1, Integer::sum);
      }
      assertThat(served.keySet()).containsExactlyInAnyOrderElementsOf(replicaPorts(pg));
      assertThat(
              scalarPort(
                  c,
                  "INSERT INTO routing_it VALUES (1001, 'w') ON CONFLICT (id) DO UPDATE"
                      + " SET v = 'w' RETURNING current_setting('port') AS port"))
          .isEqualTo(primary);

      // Autocommit off: a read-write transaction is the primary's, reads included.
      c.setAutoCommit(false);
      assertThat(read(c, 2)).isEqualTo(primary);
      c.commit();

      // setReadOnly(true) with autocommit off: BEGIN READ ONLY, the whole transaction on one
      // replica.
      c.setReadOnly(true);
      String first = read(c, 3);
      assertThat(first).isIn(replicaPorts(pg));
      assertThat(read(c, 4)).isEqualTo(first);
      c.commit();
      c.setReadOnly(false);
      c.setAutoCommit(true);

      // The servers' own statistics agree: a burst of 300 reads commits on the replicas.
      Map<String, Long> before = commits(pg);
      for (int i = 0; i < 300; i++) {
        read(c, 1 + i % 100);
      }
      await()
          .atMost(Duration.ofSeconds(20))
          .pollInterval(Duration.ofMillis(500))
          .untilAsserted(
              () -> {
                Map<String, Long> after = commits(pg);
                long onReplicas = 0;
                for (String p : replicaPorts(pg)) {
                  onReplicas += after.get(p) - before.get(p);
                }
                assertThat(onReplicas).isGreaterThanOrEqualTo(300);
                // The primary sees only probes (5 a second), the look-ups and these checks.
                assertThat(after.get(primary) - before.get(primary)).isLessThan(150);
              });
      Exposition m = metrics(proxy);
      assertThat(m.sum("cryoproxy_query_seconds_count", "route", "replica")).isGreaterThan(300);
    }
  }

  /**
   * A client's batch that arrives in pieces is judged whole: Parse, Bind and Execute first and the
   * Sync a moment later still read from a replica. A batch that ends in Flush is answered at once,
   * as the server would, without waiting for a Sync.
   */
  @Test
  void aBatchSplitAcrossReadsIsJudgedWhole(PgCluster pg) throws Exception {
    try (RunningProxy proxy = start(pg, "{ read_your_writes: off }");
        Connection c = proxy.connect("app", "postgres", null);
        WireClient wire = new WireClient(proxy.port()).timeout(10_000)) {
      warmUp(c, pg);
      wire.startup("postgres", "app");
      assertThat(wire.readUntilReady()).isNull();
      for (int i = 0; i < 10; i++) {
        wire.send(extended("SELECT current_setting('port')"));
        Thread.sleep(50); // the proxy reads the first part alone
        wire.send(WireClient.message('S', new byte[0]));
        assertThat(portFromReply(wire)).isIn(replicaPorts(pg));
      }
      wire.send(extended("SELECT current_setting('port')"));
      wire.send(WireClient.message('H', new byte[0]));
      Message row;
      while ((row = wire.read()).type() != 'D') {
        assertThat(row.type()).isNotEqualTo('E');
      }
      wire.send(WireClient.message('S', new byte[0]));
      assertThat(wire.readUntilReady()).isNull();
    }
  }

  /** Parse (unnamed), Bind and Execute of {@code sql}, without Sync. */
  private static byte[] extended(String sql) {
    byte[] q = (sql + "\0").getBytes(StandardCharsets.UTF_8);
    byte[] parse = new byte[1 + q.length + 2];
    System.arraycopy(q, 0, parse, 1, q.length);
    ByteBuffer out = ByteBuffer.allocate(1024);
    out.put(WireClient.message('P', parse));
    out.put(WireClient.message('B', new byte[] {0, 0, 0, 0, 0, 0, 0, 0}));
    out.put(WireClient.message('E', new byte[] {0, 0, 0, 0, 0}));
    return Arrays.copyOf(out.array(), out.position());
  }

  /** The single text column of the DataRow in the reply up to ReadyForQuery. */
  private static String portFromReply(WireClient wire) throws IOException {
    String value = null;
    Message m;
    while ((m = wire.read()).type() != 'Z') {
      assertThat(m.type()).as("reply %s", m.field('M')).isNotEqualTo('E');
      if (m.type() == 'D') {
        ByteBuffer body = ByteBuffer.wrap(m.body());
        body.getShort();
        byte[] text = new byte[body.getInt()];
        body.get(text);
        value = new String(text, StandardCharsets.UTF_8);
      }
    }
    return value;
  }

  // ---------------------------------------------------------------- acceptance 2

  @Test
  void misclassifiedStatementsSucceedOnThePrimary(PgCluster pg) throws Exception {
    String primary = port(pg.primary());
    try (RunningProxy proxy = start(pg, "{ read_your_writes: off }");
        Connection c = proxy.connect("app", "postgres", null)) {
      warmUp(c, pg);
      List<String> sqls =
          List.of(
              "SELECT nextval('routing_seq'), current_setting('port') AS port",
              "SELECT write_row(), current_setting('port') AS port",
              "WITH x AS (UPDATE routing_it SET v = 'cte' WHERE id = 5 RETURNING v)"
                  + " SELECT v, current_setting('port') AS port FROM x",
              "SELECT v, current_setting('port') AS port FROM routing_it WHERE id = 6 FOR UPDATE",
              "SELECT v, current_setting('port') AS port FROM routing_it WHERE id = 6"
                  + " FOR NO KEY UPDATE",
              "/* cryoproxy:primary */ SELECT 1, current_setting('port') AS port");
      for (int round = 0; round < 3; round++) { // the look-ups have answered by the later rounds
        for (String sql : sqls) {
          assertThat(scalarPort(c, sql)).as(sql).isEqualTo(primary);
        }
        Thread.sleep(300);
      }
      assertThat(pg.primary().queryString("SELECT count(*) FROM written_by_function"))
          .isEqualTo("3");
      assertThat(pg.primary().queryString("SELECT v FROM routing_it WHERE id = 5"))
          .isEqualTo("cte");

      // A write the proxy was told is a read: the replica says 25006 before anything reached
      // the client, and the proxy runs it again on the primary.
      assertThat(
              scalarPort(
                  c,
                  "/* cryoproxy:replica */ INSERT INTO routing_it VALUES (2001, 'hinted')"
                      + " RETURNING current_setting('port') AS port"))
          .isEqualTo(primary);
      assertThat(pg.primary().queryString("SELECT v FROM routing_it WHERE id = 2001"))
          .isEqualTo("hinted");
      assertThat(metrics(proxy).sum("cryoproxy_replays_total", "reason", "read_only")).isEqualTo(1);
      // A replica hint on a read is honoured.
      assertThat(scalarPort(c, "/* cryoproxy:replica */ SELECT 1, current_setting('port') AS port"))
          .isIn(replicaPorts(pg));
    }
  }

  // ---------------------------------------------------------------- acceptance 3

  @Test
  void aClientReadsItsOwnWritesWhileOthersReadReplicas(PgCluster pg) throws Exception {
    String primary = port(pg.primary());
    for (PgNode r : pg.replicas()) {
      r.sql("ALTER SYSTEM SET recovery_min_apply_delay = '300ms'");
      r.sql("SELECT pg_reload_conf()");
    }
    try (RunningProxy proxy = start(pg, "{ read_your_writes: session }");
        Connection writer = proxy.connect("app", "postgres", null);
        Connection bystander = proxy.connect("app", "postgres", null)) {
      warmUp(bystander, pg);
      AtomicBoolean stop = new AtomicBoolean();
      Map<String, Integer> bystanderServed = new HashMap<>();
      List<Throwable> bystanderErrors = new ArrayList<>();
      Thread reader =
          new Thread(
              () -> {
                try {
                  while (!stop.get()) {
                    bystanderServed.merge(read(bystander, 1), 1, Integer::sum);
                  }
                } catch (Throwable e) {
                  bystanderErrors.add(e);
                }
              });
      reader.start();
      Map<String, Integer> writerServed = new HashMap<>();
      try (PreparedStatement insert = writer.prepareStatement("INSERT INTO ryw_it VALUES (?, ?)");
          PreparedStatement select =
              writer.prepareStatement(
                  "SELECT v, current_setting('port') FROM ryw_it WHERE id = ?")) {
        for (int i = 1; i <= 1000; i++) {
          insert.setInt(1, i);
          insert.setString(2, "row " + i);
          insert.executeUpdate();
          select.setInt(1, i);
          try (ResultSet rs = select.executeQuery()) {
            assertThat(rs.next()).as("row %d read back at once", i).isTrue();
            assertThat(rs.getString(1)).isEqualTo("row " + i);
            writerServed.merge(rs.getString(2), 1, Integer::sum);
          }
        }
      } finally {
        stop.set(true);
        reader.join();
      }
      assertThat(bystanderErrors).isEmpty();
      // The writer's reads had to stay on the primary (the replicas are 300 ms behind); the
      // bystander, which never wrote, kept reading the replicas.
      assertThat(writerServed.keySet()).containsExactly(primary);
      assertThat(bystanderServed.keySet()).containsAnyElementsOf(replicaPorts(pg));
      int onReplicas = 0;
      for (String p : replicaPorts(pg)) {
        onReplicas += bystanderServed.getOrDefault(p, 0);
      }
      assertThat(onReplicas)
          .isGreaterThan(bystanderServed.values().stream().mapToInt(i -> i).sum() / 2);

      // Once the replicas have replayed the writer's last commit, its reads go there again.
      try (PreparedStatement select =
          writer.prepareStatement("SELECT v, current_setting('port') FROM ryw_it WHERE id = ?")) {
        await()
            .atMost(Duration.ofSeconds(10))
            .pollInterval(Duration.ofMillis(100))
            .until(
                () -> {
                  select.setInt(1, 1000);
                  try (ResultSet rs = select.executeQuery()) {
                    rs.next();
                    return replicaPorts(pg).contains(rs.getString(2));
                  }
                });
      }
    } finally {
      for (PgNode r : pg.replicas()) {
        r.sql("ALTER SYSTEM RESET recovery_min_apply_delay");
        r.sql("SELECT pg_reload_conf()");
      }
    }
  }

  /** Control for acceptance 3: without read-your-writes the same loop does miss its own rows. */
  @Test
  void withoutReadYourWritesTheReplicasLag(PgCluster pg) throws Exception {
    for (PgNode r : pg.replicas()) {
      r.sql("ALTER SYSTEM SET recovery_min_apply_delay = '300ms'");
      r.sql("SELECT pg_reload_conf()");
    }
    try (RunningProxy proxy = start(pg, "{ read_your_writes: off }");
        Connection c = proxy.connect("app", "postgres", null)) {
      warmUp(c, pg);
      int missed = 0;
      try (PreparedStatement insert = c.prepareStatement("INSERT INTO ryw_it VALUES (?, ?)");
          PreparedStatement select =
              c.prepareStatement("SELECT v, current_setting('port') FROM ryw_it WHERE id = ?")) {
        for (int i = 5001; i <= 5050; i++) {
          insert.setInt(1, i);
          insert.setString(2, "row " + i);
          insert.executeUpdate();
          select.setInt(1, i);
          try (ResultSet rs = select.executeQuery()) {
            if (!rs.next()) {
              missed++;
            }
          }
        }
      }
      assertThat(missed).isPositive();
    } finally {
      for (PgNode r : pg.replicas()) {
        r.sql("ALTER SYSTEM RESET recovery_min_apply_delay");
        r.sql("SELECT pg_reload_conf()");
      }
    }
  }

  // ---------------------------------------------------------------- correctness under load

  /**
   * 48 pgJDBC clients for a few seconds over pools of 4 per node: routed reads (simple and
   * server-prepared, single rows, aggregates, errors), read-only transactions, batches of writes
   * read back at once. Every answer is checked: the replay window (held replies, sealed units,
   * re-routing between units) must never mix up or lose a reply.
   */
  @Test
  void mixedWorkloadThroughTheRouterGetsEveryAnswerRight(PgCluster pg) throws Exception {
    long seconds = Long.getLong("cryoproxy.load.seconds", 8);
    try (RunningProxy proxy = start(pg, "{ read_your_writes: session }", 4)) {
      try (Connection c = proxy.connect("app", "postgres", null)) {
        warmUp(c, pg);
      }
      List<Thread> threads = new ArrayList<>();
      List<Throwable> failures = java.util.Collections.synchronizedList(new ArrayList<>());
      java.util.concurrent.atomic.AtomicLong operations =
          new java.util.concurrent.atomic.AtomicLong();
      long end = System.nanoTime() + Duration.ofSeconds(seconds).toNanos();
      for (int t = 0; t < 48; t++) {
        int client = t;
        threads.add(
            new Thread(
                () -> {
                  try (Connection c =
                      proxy.connect(
                          "app",
                          "postgres",
                          null,
                          "prepareThreshold",
                          client % 2 == 0 ? "1" : "5")) {
                    java.util.Random random = new java.util.Random(client);
                    int seq = 0;
                    while (System.nanoTime() < end) {
                      int id = 1 + random.nextInt(1000);
                      switch (random.nextInt(6)) {
                        case 0 -> {
                          try (PreparedStatement ps =
                              c.prepareStatement("SELECT v FROM static_it WHERE id = ?")) {
                            ps.setInt(1, id);
                            try (ResultSet rs = ps.executeQuery()) {
                              assertThat(rs.next()).isTrue();
                              assertThat(rs.getString(1)).isEqualTo("s" + id);
                              assertThat(rs.next()).isFalse();
                            }
                          }
                        }
                        case 1 -> {
                          try (Statement st = c.createStatement();
                              ResultSet rs =
                                  st.executeQuery(
                                      "SELECT count(*), sum(id) FROM static_it WHERE id <= "
                                          + id)) {
                            assertThat(rs.next()).isTrue();
                            assertThat(rs.getLong(1)).isEqualTo(id);
                            assertThat(rs.getLong(2)).isEqualTo((long) id * (id + 1) / 2);
                          }
                        }
                        case 2 -> {
                          try (Statement st = c.createStatement()) {
                            st.executeQuery("SELECT 1 / (id - id) FROM static_it WHERE id = " + id);
                            throw new AssertionError("division by zero expected");
                          } catch (SQLException e) {
                            assertThat(e.getSQLState()).isEqualTo("22012");
                          }
                        }
                        case 3 -> {
                          c.setAutoCommit(false);
                          c.setReadOnly(true);
                          try (PreparedStatement ps =
                              c.prepareStatement("SELECT v FROM static_it WHERE id = ?")) {
                            for (int k = 0; k < 2; k++) {
                              ps.setInt(1, id + k > 1000 ? 1 : id + k);
                              try (ResultSet rs = ps.executeQuery()) {
                                assertThat(rs.next()).isTrue();
                              }
                            }
                          }
                          c.commit();
                          c.setReadOnly(false);
                          c.setAutoCommit(true);
                        }
                        default -> {
                          try (PreparedStatement ins =
                              c.prepareStatement("INSERT INTO mixed_it VALUES (?, ?)")) {
                            for (int k = 0; k < 3; k++) {
                              ins.setInt(1, client);
                              ins.setInt(2, ++seq);
                              ins.addBatch();
                            }
                            ins.executeBatch();
                          }
                          try (PreparedStatement ps =
                              c.prepareStatement(
                                  "SELECT count(*), max(seq) FROM mixed_it WHERE client = ?")) {
                            ps.setInt(1, client);
                            try (ResultSet rs = ps.executeQuery()) {
                              assertThat(rs.next()).isTrue();
                              assertThat(rs.getInt(1)).isEqualTo(seq);
                              assertThat(rs.getInt(2)).isEqualTo(seq);
                            }
                          }
                        }
                      }
                      operations.incrementAndGet();
                    }
                  } catch (Throwable e) {
                    failures.add(e);
                  }
                }));
      }
      threads.forEach(Thread::start);
      for (Thread t : threads) {
        t.join();
      }
      assertThat(failures).isEmpty();
      Exposition m = metrics(proxy);
      System.out.printf(
          "mixed routing workload: %d operations in %d s; queries on replicas %.0f, on the primary"
              + " %.0f%n",
          operations.get(),
          seconds,
          m.sum("cryoproxy_query_seconds_count", "route", "replica"),
          m.sum("cryoproxy_query_seconds_count", "route", "primary"));
      assertThat(operations.get()).isGreaterThan(48);
      assertThat(m.sum("cryoproxy_query_seconds_count", "route", "replica")).isPositive();
    }
  }

  // ---------------------------------------------------------------- acceptance 7

  @Test
  void aLaggingReplicaGetsNoReadsUntilItCatchesUp(PgCluster pg) throws Exception {
    PgNode lagging = pg.replica(0);
    String laggingPort = port(lagging);
    AtomicBoolean stop = new AtomicBoolean();
    // Commits keep coming, so the delayed replica's last replayed commit keeps getting older.
    Thread writes =
        new Thread(
            () -> {
              try (Connection c = pg.primary().connect();
                  Statement st = c.createStatement()) {
                while (!stop.get()) {
                  st.execute("UPDATE routing_it SET v = v WHERE id = 100");
                  Thread.sleep(50);
                }
              } catch (Exception e) {
                throw new IllegalStateException(e);
              }
            });
    try (RunningProxy proxy = start(pg, "{ max_lag: 1s, read_your_writes: off }");
        Connection c = proxy.connect("app", "postgres", null)) {
      warmUp(c, pg);
      writes.start();
      lagging.sql("ALTER SYSTEM SET recovery_min_apply_delay = '3s'");
      lagging.sql("SELECT pg_reload_conf()");
      await()
          .atMost(Duration.ofSeconds(10))
          .until(
              () ->
                  proxy.server().health().nodes().stream()
                      .anyMatch(h -> h.node().port() == lagging.port() && h.lagSeconds() > 1));
      Map<String, Integer> served = new HashMap<>();
      for (int i = 0; i < 200; i++) {
        served.merge(read(c, 1 + i % 100), 1, Integer::sum);
      }
      assertThat(served).doesNotContainKey(laggingPort);
      assertThat(served).containsKey(port(pg.replica(1)));

      lagging.sql("ALTER SYSTEM RESET recovery_min_apply_delay");
      lagging.sql("SELECT pg_reload_conf()");
      await()
          .atMost(Duration.ofSeconds(20))
          .pollInterval(Duration.ofMillis(20))
          .until(() -> laggingPort.equals(read(c, 7)));
    } finally {
      stop.set(true);
      writes.join();
      lagging.sql("ALTER SYSTEM RESET recovery_min_apply_delay");
      lagging.sql("SELECT pg_reload_conf()");
    }
  }
}

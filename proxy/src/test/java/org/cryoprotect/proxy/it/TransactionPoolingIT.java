package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.pool.ServerPool;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Transaction pooling against real PostgreSQL: many clients over few server connections, with every
 * result checked, session state that never leaks, and no dirty connection ever reused.
 */
class TransactionPoolingIT {
  static PgCluster pg;

  /** One server connection: every client shares it, which is what isolation tests need. */
  static RunningProxy single;

  /** A pool of ten for the load tests. */
  static RunningProxy ten;

  @BeforeAll
  static void start() throws Exception {
    pg = PgCluster.builder().start();
    pg.primary().sql("CREATE DATABASE app");
    pg.primary()
        .sql(
            "app",
            "CREATE SCHEMA other; CREATE TABLE public.t (v text); CREATE TABLE other.t (v text);"
                + " INSERT INTO public.t VALUES ('public'); INSERT INTO other.t VALUES ('other');"
                + " CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL);"
                + " CREATE TABLE rows (client int, seq int, payload text, PRIMARY KEY (client, seq));"
                + " CREATE ROLE reader NOLOGIN; GRANT reader TO postgres;"
                + " CREATE TABLE shape (a int); INSERT INTO shape VALUES (1)");
    String db = RunningProxy.database("app", "app", "127.0.0.1", pg.primary().port());
    single =
        RunningProxy.start(
            "pool: { mode: transaction, size: 1, wait_timeout: 20s, server_check_delay: 0s }\n"
                + db);
    ten = RunningProxy.start("pool: { mode: transaction, size: 10, wait_timeout: 60s }\n" + db);
  }

  @AfterAll
  static void stop() {
    single.close();
    ten.close();
    pg.close();
  }

  static Connection connect(RunningProxy proxy, String... options) throws SQLException {
    return proxy.connect("app", "postgres", null, options);
  }

  static String one(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      assertThat(rs.next()).isTrue();
      return rs.getString(1);
    }
  }

  // ------------------------------------------------------------------ acceptance 3

  @Test
  void sessionStateNeverLeaksToAnotherClientOnTheSameServerConnection() throws Exception {
    try (Connection a = connect(single);
        Connection b = connect(single)) {
      String pid = one(a, "SELECT pg_backend_pid()");
      assertThat(one(b, "SELECT pg_backend_pid()")).isEqualTo(pid); // one server connection

      a.createStatement().execute("SET search_path = other");
      assertThat(one(a, "SELECT v FROM t")).isEqualTo("other");
      assertThat(one(b, "SELECT v FROM t")).isEqualTo("public");
      assertThat(one(a, "SELECT v FROM t")).isEqualTo("other");

      one(a, "SELECT set_config('search_path', '', false)");
      assertThat(one(a, "SHOW search_path")).isEmpty();
      assertThat(one(b, "SHOW search_path")).isEqualTo("\"$user\", public");

      a.createStatement().execute("SET statement_timeout = '1234ms'");
      assertThat(one(b, "SHOW statement_timeout")).isEqualTo("0");
      assertThat(one(a, "SHOW statement_timeout")).isEqualTo("1234ms");

      a.createStatement().execute("SET default_transaction_read_only = on");
      b.createStatement().execute("INSERT INTO public.t VALUES ('from b')");
      assertThatThrownBy(() -> a.createStatement().execute("INSERT INTO public.t VALUES ('a')"))
          .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("25006"));

      a.createStatement().execute("SET ROLE reader");
      assertThat(one(a, "SELECT current_user")).isEqualTo("reader");
      assertThat(one(b, "SELECT current_user")).isEqualTo("postgres");
      assertThat(one(b, "SHOW default_transaction_read_only")).isEqualTo("off");

      a.createStatement().execute("RESET ALL");
      a.createStatement().execute("RESET ROLE");
      assertThat(one(a, "SELECT current_user")).isEqualTo("postgres");
      assertThat(one(a, "SHOW statement_timeout")).isEqualTo("0");
      // Startup parameters survive RESET ALL as on a direct connection.
      assertThat(one(a, "SHOW DateStyle")).startsWith("ISO");
      assertThat(one(b, "SELECT pg_backend_pid()")).isEqualTo(pid);
    }
  }

  @Test
  void applicationNameAndStartupOptionsFollowTheClient() throws Exception {
    try (Connection a =
            connect(single, "ApplicationName", "client-a", "options", "-c work_mem=5MB");
        Connection b = connect(single, "ApplicationName", "client-b")) {
      assertThat(one(a, "SHOW application_name")).isEqualTo("client-a");
      assertThat(one(b, "SHOW application_name")).isEqualTo("client-b");
      assertThat(one(a, "SHOW work_mem")).isEqualTo("5MB");
      assertThat(one(b, "SHOW work_mem")).isEqualTo("4MB");
    }
  }

  // ------------------------------------------------------------------ acceptance 4

  /**
   * On a direct connection pgJDBC's first execution after the DDL fails with 0A000 "cached plan
   * must not change result type" and the next one re-prepares and succeeds. Through the proxy the
   * same happens, and the stale server-side statement is closed before it is prepared again.
   */
  @Test
  void ddlThatChangesAResultTypeBehavesAsOnADirectConnection() throws Exception {
    List<String> direct = ddlSequence(pg.primary().connect("app"), "shape_direct");
    List<String> proxied = ddlSequence(connect(single, "prepareThreshold", "1"), "shape_proxy");
    assertThat(proxied).isEqualTo(direct);
    assertThat(proxied.get(proxied.size() - 1)).isEqualTo("ok 2 columns");
  }

  private List<String> ddlSequence(Connection c, String table) throws SQLException {
    List<String> outcomes = new ArrayList<>();
    try (c) {
      c.createStatement().execute("DROP TABLE IF EXISTS " + table);
      c.createStatement().execute("CREATE TABLE " + table + " (a int)");
      c.createStatement().execute("INSERT INTO " + table + " VALUES (1)");
      c.unwrap(org.postgresql.PGConnection.class).setPrepareThreshold(1);
      try (PreparedStatement ps = c.prepareStatement("SELECT * FROM " + table)) {
        for (int i = 0; i < 4; i++) {
          if (i == 2) {
            try (Connection other = pg.primary().connect("app")) {
              other.createStatement().execute("ALTER TABLE " + table + " ADD COLUMN b int");
            }
          }
          try (ResultSet rs = ps.executeQuery()) {
            rs.next();
            outcomes.add("ok " + rs.getMetaData().getColumnCount() + " columns");
          } catch (SQLException e) {
            outcomes.add("error " + e.getSQLState());
          }
        }
      }
    }
    return outcomes;
  }

  // ------------------------------------------------------------------ acceptance 5

  @Test
  void pipelinedBatchesAndExplicitTransactionsUnderASaturatedPool() throws Exception {
    int clients = 6;
    ExecutorService workers = Executors.newFixedThreadPool(clients);
    List<Future<?>> done = new ArrayList<>();
    for (int client = 0; client < clients; client++) {
      int id = 1000 + client;
      done.add(
          workers.submit(
              () -> {
                try (Connection c = connect(single, "prepareThreshold", "1")) {
                  c.setAutoCommit(false);
                  try (PreparedStatement ps =
                      c.prepareStatement(
                          "INSERT INTO rows (client, seq, payload) VALUES (?, ?, ?)")) {
                    for (int seq = 0; seq < 1000; seq++) {
                      ps.setInt(1, id);
                      ps.setInt(2, seq);
                      ps.setString(3, "batch " + seq);
                      ps.addBatch();
                    }
                    int[] counts = ps.executeBatch();
                    assertThat(counts).hasSize(1000).containsOnly(1);
                  }
                  c.commit();
                  // BEGIN, then extended-protocol statements, 1000 times, each reply checked.
                  try (PreparedStatement up =
                          c.prepareStatement(
                              "UPDATE rows SET payload = ? WHERE client = ? AND seq = ?"
                                  + " RETURNING seq, payload");
                      PreparedStatement check =
                          c.prepareStatement(
                              "SELECT payload FROM rows WHERE client = ? AND seq = ?")) {
                    for (int seq = 0; seq < 1000; seq++) {
                      up.setString(1, "tx " + seq);
                      up.setInt(2, id);
                      up.setInt(3, seq);
                      try (ResultSet rs = up.executeQuery()) {
                        assertThat(rs.next()).isTrue();
                        assertThat(rs.getInt(1)).isEqualTo(seq);
                        assertThat(rs.getString(2)).isEqualTo("tx " + seq);
                      }
                      check.setInt(1, id);
                      check.setInt(2, seq);
                      try (ResultSet rs = check.executeQuery()) {
                        assertThat(rs.next()).isTrue();
                        assertThat(rs.getString(1)).isEqualTo("tx " + seq);
                      }
                      c.commit();
                    }
                  }
                }
                return null;
              }));
    }
    for (Future<?> f : done) {
      f.get(5, TimeUnit.MINUTES);
    }
    workers.shutdown();
    try (Connection c = pg.primary().connect("app")) {
      assertThat(
              one(c, "SELECT count(*) FROM rows WHERE client >= 1000 AND payload = 'tx ' || seq"))
          .isEqualTo(String.valueOf(clients * 1000));
    }
  }

  // ------------------------------------------------------------------ acceptance 6

  /**
   * Clients vanish mid-transaction, mid-result, mid-COPY and mid-batch. The single server
   * connection goes to the next client each time: it must always start idle, with default settings
   * and without the dead client's uncommitted rows.
   */
  @Test
  void clientsKilledAtRandomPointsNeverLeaveADirtyConnection() throws Exception {
    Random random = new Random(42);
    for (int i = 0; i < 100; i++) {
      int scenario = random.nextInt(5);
      try (WireClient dying = new WireClient(single.port())) {
        dying.startup("postgres", "app");
        dying.readUntilReady();
        switch (scenario) {
          case 0 -> // inside a transaction with an uncommitted row and a changed setting
              dying.send(
                  WireClient.query(
                      "BEGIN; SET LOCAL statement_timeout = '1s';"
                          + " SET work_mem = '7MB'; INSERT INTO public.t VALUES ('dirty "
                          + i
                          + "')"));
          case 1 -> // mid-result: a long result still streaming
              dying.send(
                  WireClient.query("SELECT repeat('x', 100) FROM generate_series(1, 200000)"));
          case 2 -> // mid-COPY FROM STDIN
              dying.send(WireClient.query("COPY public.t FROM STDIN"));
          case 3 -> // an extended batch without its Sync, inside a transaction
              dying.send(
                  concat(
                      WireClient.query("BEGIN"),
                      extendedWithoutSync("INSERT INTO public.t VALUES ('dirty ext')")));
          default -> // failed transaction block
              dying.send(WireClient.query("BEGIN; SELECT 1/0"));
        }
        if (random.nextBoolean()) {
          dying.readByte(); // let some of the reply arrive first
        }
      } // socket closed abruptly, no Terminate
      try (WireClient next = new WireClient(single.port())) {
        next.startup("postgres", "app");
        next.readUntilReady();
        next.send(
            WireClient.query(
                "SELECT current_setting('work_mem'), now() = statement_timestamp(),"
                    + " (SELECT count(*) FROM public.t WHERE v LIKE 'dirty%')"));
        List<String> row = null;
        while (true) {
          Message m = next.read();
          if (m.type() == 'D') {
            row = texts(m);
          }
          if (m.type() == 'E') {
            throw new AssertionError("scenario " + scenario + ": " + m.field('M'));
          }
          if (m.type() == 'Z') {
            assertThat((char) m.body()[0]).as("scenario %d", scenario).isEqualTo('I');
            break;
          }
        }
        assertThat(row).as("scenario %d", scenario).containsExactly("4MB", "t", "0");
      }
    }
  }

  private static byte[] extendedWithoutSync(String sql) {
    byte[] q = (sql + "\0").getBytes(StandardCharsets.UTF_8);
    byte[] parse = new byte[1 + q.length + 2];
    System.arraycopy(q, 0, parse, 1, q.length); // unnamed statement, no parameter types
    byte[] bind = new byte[] {0, 0, 0, 0, 0, 0, 0, 0};
    byte[] execute = new byte[] {0, 0, 0, 0, 0};
    return concat(
        WireClient.message('P', parse),
        WireClient.message('B', bind),
        WireClient.message('E', execute),
        WireClient.message('H', new byte[0]));
  }

  private static byte[] concat(byte[]... parts) {
    int n = 0;
    for (byte[] p : parts) {
      n += p.length;
    }
    byte[] all = new byte[n];
    int at = 0;
    for (byte[] p : parts) {
      System.arraycopy(p, 0, all, at, p.length);
      at += p.length;
    }
    return all;
  }

  private static List<String> texts(Message m) {
    java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(m.body());
    int count = b.getShort();
    List<String> values = new ArrayList<>();
    for (int i = 0; i < count; i++) {
      int len = b.getInt();
      byte[] v = new byte[len];
      b.get(v);
      values.add(new String(v, StandardCharsets.UTF_8));
    }
    return values;
  }

  // ------------------------------------------------------------------ acceptance 1

  @Test
  void twoHundredClientsOverTenServerConnectionsWithEveryResultChecked() throws Exception {
    int clients = 200;
    long seconds = Long.getLong("cryoproxy.load.seconds", 20);
    try (Connection c = pg.primary().connect("app")) {
      c.createStatement()
          .execute("INSERT INTO counters SELECT g, 0 FROM generate_series(0, 199) g");
    }
    ExecutorService workers = Executors.newFixedThreadPool(clients);
    AtomicLong operations = new AtomicLong();
    ConcurrentLinkedQueue<Throwable> errors = new ConcurrentLinkedQueue<>();
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
    List<Future<?>> futures = new ArrayList<>();
    for (int i = 0; i < clients; i++) {
      int id = i;
      futures.add(
          workers.submit(
              () -> {
                try {
                  mixedWorkload(id, deadline, operations);
                } catch (Throwable e) {
                  errors.add(e);
                }
              }));
    }
    for (Future<?> f : futures) {
      f.get(seconds + 120, TimeUnit.SECONDS);
    }
    workers.shutdown();
    assertThat(errors).isEmpty();
    assertThat(operations.get()).isGreaterThan(clients);
    ServerPool.Stats stats = ten.server().pools().stats().get(0);
    assertThat(stats.open()).isLessThanOrEqualTo(10);
    System.out.printf(
        "TransactionPoolingIT: %d operations by %d clients over %d server connections in %d s,"
            + " %d checkouts, max wait %.1f ms%n",
        operations.get(),
        clients,
        stats.open(),
        seconds,
        stats.checkouts(),
        stats.maxWaitNanos() / 1e6);
  }

  private static void mixedWorkload(int id, long deadline, AtomicLong operations)
      throws SQLException {
    Random random = new Random(id);
    String threshold = id % 2 == 0 ? "1" : "5";
    long expectedCounter = 0;
    int seq = 0;
    try (Connection c = connect(ten, "prepareThreshold", threshold)) {
      while (System.nanoTime() < deadline) {
        switch (random.nextInt(6)) {
          case 0 -> {
            try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 3, ?::text")) {
              int v = random.nextInt(1000);
              ps.setInt(1, v);
              ps.setString(2, "c" + id);
              try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                check(rs.getInt(1) == v * 3 && rs.getString(2).equals("c" + id), "select");
              }
            }
          }
          case 1 -> {
            try (PreparedStatement ps =
                c.prepareStatement("UPDATE counters SET n = n + 1 WHERE id = ? RETURNING n")) {
              ps.setInt(1, id);
              try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                expectedCounter++;
                check(rs.getLong(1) == expectedCounter, "counter");
              }
            }
          }
          case 2 -> {
            c.setAutoCommit(false);
            try (PreparedStatement ps =
                c.prepareStatement("INSERT INTO rows (client, seq, payload) VALUES (?, ?, ?)")) {
              for (int k = 0; k < 5; k++) {
                ps.setInt(1, id);
                ps.setInt(2, seq + k);
                ps.setString(3, "p" + (seq + k));
                ps.addBatch();
              }
              ps.executeBatch();
            }
            try (PreparedStatement ps =
                c.prepareStatement("SELECT count(*) FROM rows WHERE client = ?")) {
              ps.setInt(1, id);
              try (ResultSet rs = ps.executeQuery()) {
                rs.next();
                check(rs.getInt(1) == seq + 5, "batch count inside transaction");
              }
            }
            c.commit();
            c.setAutoCommit(true);
            seq += 5;
          }
          case 3 -> {
            try (ResultSet rs = c.getMetaData().getColumns(null, "public", "counters", null)) {
              int columns = 0;
              while (rs.next()) {
                columns++;
              }
              check(columns == 2, "metadata");
            }
          }
          case 4 -> {
            c.setAutoCommit(false);
            c.setReadOnly(true);
            check(one(c, "SHOW transaction_read_only").equals("on"), "read only");
            check(
                Long.parseLong(one(c, "SELECT n FROM counters WHERE id = " + id))
                    == expectedCounter,
                "read-only read");
            c.commit();
            c.setReadOnly(false);
            c.setAutoCommit(true);
          }
          default -> {
            try (Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT " + id + ", 'simple'")) {
              rs.next();
              check(rs.getInt(1) == id, "simple query");
            }
          }
        }
        operations.incrementAndGet();
      }
    }
  }

  private static void check(boolean ok, String what) {
    if (!ok) {
      throw new AssertionError("wrong result: " + what);
    }
  }

  // ------------------------------------------------------------------ acceptance 2

  @Test
  void pgbenchPreparedWithSixtyFourClientsOverEightServerConnections() throws Exception {
    ClientTools.requireTool(
        Files.isExecutable(ClientToolsIT.tool("pgbench")), "pgbench is needed (postgresql-client)");
    pg.primary().sql("CREATE DATABASE bench");
    try (RunningProxy eight =
        RunningProxy.start(
            "pool: { mode: transaction, size: 8, wait_timeout: 60s }\n"
                + RunningProxy.database("bench", "bench", "127.0.0.1", pg.primary().port()))) {
      ClientToolsIT.Result init = ClientToolsIT.pgbench(eight, "bench", "-i", "-s", "1", "-q");
      assertThat(init.exit()).as(init.output()).isZero();
      ClientToolsIT.Result run =
          ClientToolsIT.pgbench(eight, "bench", "-M", "prepared", "-c", "64", "-j", "4", "-T", "5");
      assertThat(run.exit()).as(run.output()).isZero();
      assertThat(run.output()).contains("number of failed transactions: 0");
      ServerPool.Stats stats = eight.server().pools().stats().get(0);
      assertThat(stats.open()).isLessThanOrEqualTo(8);
      System.out.println("TransactionPoolingIT pgbench:\n" + run.output());
    }
  }
}

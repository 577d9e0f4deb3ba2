package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.ByteArrayOutputStream;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.ParameterMetaData;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.SQLWarning;
import java.sql.Statement;
import java.sql.Timestamp;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.postgresql.copy.CopyManager;

/**
 * pgJDBC through the proxy: every protocol feature a real application uses must behave exactly as
 * on a direct connection. Session mode here; {@link JdbcThroughTransactionPoolIT} runs the same
 * tests in transaction mode.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
class JdbcThroughProxyIT {
  static PgCluster pg;
  static RunningProxy proxy;

  /** The pool section of the proxy's configuration; subclasses run the suite in other modes. */
  String poolYaml() {
    return "pool: { mode: session }\n";
  }

  @BeforeAll
  void start() throws Exception {
    pg = PgCluster.builder().start();
    pg.primary().sql("CREATE DATABASE app");
    proxy =
        RunningProxy.start(
            poolYaml() + RunningProxy.database("app", "app", "127.0.0.1", pg.primary().port()));
    try (Connection c = connect()) {
      c.createStatement()
          .execute("CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, at timestamptz)");
    }
  }

  @AfterAll
  void stop() {
    if (proxy != null) {
      proxy.close();
    }
    if (pg != null) {
      pg.close();
    }
  }

  static Connection connect(String... options) throws SQLException {
    return proxy.connect("app", "postgres", null, options);
  }

  @ParameterizedTest
  @ValueSource(strings = {"simple", "extended", "extendedForPrepared", "extendedCacheEverything"})
  void everyQueryModeReturnsTheSameRows(String mode) throws SQLException {
    try (Connection c = connect("preferQueryMode", mode, "prepareThreshold", "1")) {
      try (PreparedStatement ps = c.prepareStatement("SELECT ?::int * 2, ?::text || 'x'")) {
        for (int i = 0; i < 5; i++) {
          ps.setInt(1, i);
          ps.setString(2, "v" + i);
          try (ResultSet rs = ps.executeQuery()) {
            assertThat(rs.next()).isTrue();
            assertThat(rs.getInt(1)).isEqualTo(i * 2);
            assertThat(rs.getString(2)).isEqualTo("v" + i + "x");
          }
        }
      }
    }
  }

  @Test
  void binaryTransferOfServerPreparedStatements() throws SQLException {
    // prepareThreshold=-1 makes pgJDBC prepare and request binary results from the first run.
    try (Connection c = connect("prepareThreshold", "-1", "binaryTransfer", "true");
        PreparedStatement ps =
            c.prepareStatement(
                "SELECT ?::int8 + 1, '2024-02-29 12:34:56+00'::timestamptz, 1.5::float8, ?::bytea")) {
      ps.setLong(1, Long.MAX_VALUE - 1);
      ps.setBytes(2, new byte[] {0, 1, (byte) 0xff});
      try (ResultSet rs = ps.executeQuery()) {
        assertThat(rs.next()).isTrue();
        assertThat(rs.getLong(1)).isEqualTo(Long.MAX_VALUE);
        assertThat(rs.getTimestamp(2))
            .isEqualTo(Timestamp.from(java.time.Instant.parse("2024-02-29T12:34:56Z")));
        assertThat(rs.getDouble(3)).isEqualTo(1.5);
        assertThat(rs.getBytes(4)).containsExactly(0, 1, 0xff);
      }
    }
  }

  @Test
  void batchInsertsAndTransactions() throws SQLException {
    try (Connection c = connect()) {
      c.setAutoCommit(false);
      try (PreparedStatement ps =
          c.prepareStatement("INSERT INTO items (id, name) VALUES (?, ?)")) {
        for (int i = 1000; i < 3000; i++) {
          ps.setInt(1, i);
          ps.setString(2, "item" + i);
          ps.addBatch();
        }
        int[] counts = ps.executeBatch();
        assertThat(counts).hasSize(2000);
      }
      c.rollback();
      assertThat(count(c, "SELECT count(*) FROM items WHERE id >= 1000 AND id < 3000")).isZero();
      try (PreparedStatement ps =
          c.prepareStatement("INSERT INTO items (id, name) VALUES (?, ?)")) {
        for (int i = 1000; i < 3000; i++) {
          ps.setInt(1, i);
          ps.setString(2, "item" + i);
          ps.addBatch();
        }
        ps.executeBatch();
      }
      c.commit();
      assertThat(count(c, "SELECT count(*) FROM items WHERE id >= 1000 AND id < 3000"))
          .isEqualTo(2000);
    }
  }

  @Test
  void copyInAndOut() throws Exception {
    try (Connection c = connect()) {
      c.createStatement().execute("CREATE TABLE copied (n int, s text)");
      CopyManager copy = c.unwrap(PGConnection.class).getCopyAPI();
      StringBuilder csv = new StringBuilder();
      for (int i = 0; i < 50_000; i++) {
        csv.append(i).append(",row ").append(i).append('\n');
      }
      long in =
          copy.copyIn("COPY copied FROM STDIN (FORMAT csv)", new StringReader(csv.toString()));
      assertThat(in).isEqualTo(50_000);
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      long outRows =
          copy.copyOut("COPY (SELECT * FROM copied ORDER BY n) TO STDOUT (FORMAT csv)", out);
      assertThat(outRows).isEqualTo(50_000);
      assertThat(out.toString(StandardCharsets.UTF_8)).isEqualTo(csv.toString());
      // A failing COPY leaves the session usable.
      assertThatThrownBy(
              () -> copy.copyIn("COPY copied FROM STDIN (FORMAT csv)", new StringReader("x,y\n")))
          .isInstanceOf(SQLException.class)
          .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("22P02"));
      assertThat(count(c, "SELECT count(*) FROM copied")).isEqualTo(50_000);
    }
  }

  @Test
  void listenNotify() throws Exception {
    try (Connection listener = connect();
        Connection notifier = connect()) {
      listener.createStatement().execute("LISTEN jobs");
      notifier.createStatement().execute("NOTIFY jobs, 'hello'");
      PGNotification[] got = listener.unwrap(PGConnection.class).getNotifications(5_000);
      assertThat(got).hasSize(1);
      assertThat(got[0].getName()).isEqualTo("jobs");
      assertThat(got[0].getParameter()).isEqualTo("hello");
    }
  }

  @Test
  void multipleResultSetsAndNotices() throws SQLException {
    try (Connection c = connect();
        Statement s = c.createStatement()) {
      assertThat(s.execute("SELECT 1; SELECT 'two'; UPDATE items SET name = name WHERE false"))
          .isTrue();
      try (ResultSet rs = s.getResultSet()) {
        rs.next();
        assertThat(rs.getInt(1)).isEqualTo(1);
      }
      assertThat(s.getMoreResults()).isTrue();
      try (ResultSet rs = s.getResultSet()) {
        rs.next();
        assertThat(rs.getString(1)).isEqualTo("two");
      }
      assertThat(s.getMoreResults()).isFalse();
      assertThat(s.getUpdateCount()).isZero();
      s.execute("DO $$ BEGIN RAISE NOTICE 'careful: %', 42; END $$");
      SQLWarning warning = s.getWarnings();
      assertThat((Object) warning).isNotNull();
      assertThat(warning.getMessage()).contains("careful: 42");
    }
  }

  @Test
  void serverErrorsKeepTheirSqlStateAndTheSessionSurvives() throws SQLException {
    try (Connection c = connect();
        Statement s = c.createStatement()) {
      assertThatThrownBy(() -> s.executeQuery("SELECT 1/0"))
          .isInstanceOf(SQLException.class)
          .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("22012"));
      s.execute("INSERT INTO items (id, name) VALUES (1, 'one') ON CONFLICT DO NOTHING");
      assertThatThrownBy(() -> s.execute("INSERT INTO items (id, name) VALUES (1, 'again')"))
          .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("23505"));
      assertThatThrownBy(() -> s.execute("SELEC 1"))
          .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("42601"));
      assertThat(count(c, "SELECT 7")).isEqualTo(7);
    }
  }

  @Test
  void metadata() throws SQLException {
    try (Connection c = connect()) {
      DatabaseMetaData meta = c.getMetaData();
      assertThat(meta.getDatabaseProductVersion())
          .isEqualTo(pg.primary().queryString("SHOW server_version"));
      try (ResultSet tables = meta.getTables(null, "public", "items", null)) {
        assertThat(tables.next()).isTrue();
        assertThat(tables.getString("TABLE_NAME")).isEqualTo("items");
      }
      try (PreparedStatement ps = c.prepareStatement("SELECT id, name FROM items WHERE id = ?")) {
        ResultSetMetaData rsMeta = ps.getMetaData();
        assertThat(rsMeta.getColumnCount()).isEqualTo(2);
        assertThat(rsMeta.getColumnName(2)).isEqualTo("name");
        ParameterMetaData params = ps.getParameterMetaData();
        assertThat(params.getParameterCount()).isEqualTo(1);
        assertThat(params.getParameterTypeName(1)).isEqualTo("int4");
      }
    }
  }

  @Test
  void tenMegabyteResultSets() throws SQLException {
    try (Connection c = connect();
        Statement s = c.createStatement()) {
      long total = 0;
      int rows = 0;
      try (ResultSet rs =
          s.executeQuery("SELECT repeat('x', 1024) FROM generate_series(1, 10240)")) {
        while (rs.next()) {
          total += rs.getString(1).length();
          rows++;
        }
      }
      assertThat(rows).isEqualTo(10240);
      assertThat(total).isEqualTo(10L * 1024 * 1024);
      try (ResultSet rs = s.executeQuery("SELECT repeat('y', 10 * 1024 * 1024)")) {
        rs.next();
        assertThat(rs.getString(1)).hasSize(10 * 1024 * 1024);
      }
    }
  }

  @Test
  void statementCancelReachesTheRightServer() throws Exception {
    try (Connection busy = connect();
        Connection bystander = connect();
        Statement s = busy.createStatement()) {
      CompletableFuture<Throwable> sleeping =
          CompletableFuture.supplyAsync(
              () -> {
                try {
                  s.execute("SELECT pg_sleep(30)");
                  return null;
                } catch (SQLException e) {
                  return e;
                }
              });
      Thread.sleep(500);
      long started = System.nanoTime();
      s.cancel();
      Throwable result = sleeping.get(10, TimeUnit.SECONDS);
      assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofSeconds(5));
      assertThat(result).isInstanceOf(SQLException.class);
      assertThat(((SQLException) result).getSQLState()).isEqualTo("57014");
      assertThat(count(busy, "SELECT 3")).isEqualTo(3);
      assertThat(count(bystander, "SELECT 4")).isEqualTo(4);
    }
  }

  @Test
  void queryTimeout() throws SQLException {
    try (Connection c = connect();
        Statement s = c.createStatement()) {
      s.setQueryTimeout(1);
      long started = System.nanoTime();
      assertThatThrownBy(() -> s.execute("SELECT pg_sleep(30)"))
          .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("57014"));
      assertThat(Duration.ofNanos(System.nanoTime() - started)).isLessThan(Duration.ofSeconds(10));
      s.setQueryTimeout(0);
      assertThat(count(c, "SELECT 5")).isEqualTo(5);
    }
  }

  @Test
  void sameAnswersDirectAndThroughTheProxy() throws SQLException {
    String query =
        "SELECT n, md5(n::text), n % 7 = 0, now() IS NOT NULL FROM generate_series(1, 500) n";
    try (Connection viaProxy = connect();
        Connection direct = pg.primary().connect("app")) {
      assertThat(rows(viaProxy, query)).isEqualTo(rows(direct, query));
      assertThat(rows(viaProxy, "SHOW server_version"))
          .isEqualTo(rows(direct, "SHOW server_version"));
    }
  }

  private static List<List<Object>> rows(Connection c, String sql) throws SQLException {
    List<List<Object>> rows = new ArrayList<>();
    try (Statement s = c.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      int columns = rs.getMetaData().getColumnCount();
      while (rs.next()) {
        List<Object> row = new ArrayList<>();
        for (int i = 1; i <= columns; i++) {
          row.add(rs.getObject(i));
        }
        rows.add(row);
      }
    }
    return rows;
  }

  static long count(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      rs.next();
      return rs.getLong(1);
    }
  }
}

package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * The admin console through psql and pgJDBC: PgBouncer's SHOW commands report what the test did,
 * PAUSE/RESUME hold and release clients, RELOAD applies a changed file without dropping clients,
 * KILL ends a database's clients.
 */
class AdminConsoleIT {
  static final String POOL = "pool: { mode: transaction, size: 1, wait_timeout: 30s }\n";
  static PgCluster pg; // one cluster for the class: each test has its own proxy
  static String databases;
  RunningProxy proxy;

  @BeforeAll
  static void startCluster() throws Exception {
    pg = PgCluster.builder().start();
    pg.primary().sql("CREATE DATABASE app");
    databases = RunningProxy.database("app", "app", "127.0.0.1", pg.primary().port());
  }

  @AfterAll
  static void stopCluster() {
    pg.close();
  }

  @BeforeEach
  void start() throws Exception {
    proxy =
        RunningProxy.start(
            POOL + "auth: { type: trust, admin_users: admin, stats_users: watcher }\n" + databases);
  }

  @AfterEach
  void stop() {
    proxy.close();
  }

  Connection app() throws SQLException {
    return proxy.connect("app", "postgres", null);
  }

  /** A SHOW command through pgJDBC's simple protocol, rows as column-name maps. */
  List<Map<String, String>> admin(String command) throws SQLException {
    return console("admin", command);
  }

  /** {@link #admin} as {@code user}. */
  List<Map<String, String>> console(String user, String command) throws SQLException {
    return console(proxy, user, command);
  }

  /** A console command to {@code through} as {@code user}, rows as column-name maps. */
  static List<Map<String, String>> console(RunningProxy through, String user, String command)
      throws SQLException {
    Properties props = new Properties();
    props.setProperty("user", user);
    props.setProperty("preferQueryMode", "simple");
    try (Connection c = DriverManager.getConnection(through.jdbcUrl("cryoproxy"), props);
        Statement s = c.createStatement()) {
      List<Map<String, String>> rows = new ArrayList<>();
      if (s.execute(command)) {
        try (ResultSet rs = s.getResultSet()) {
          while (rs.next()) {
            Map<String, String> row = new LinkedHashMap<>();
            for (int i = 1; i <= rs.getMetaData().getColumnCount(); i++) {
              row.put(rs.getMetaData().getColumnName(i), rs.getString(i));
            }
            rows.add(row);
          }
        }
      }
      return rows;
    }
  }

  Map<String, String> appPool() throws SQLException {
    return admin("SHOW POOLS").stream()
        .filter(r -> r.get("database").equals("app"))
        .findFirst()
        .orElseThrow();
  }

  /**
   * SHOW SERVERS and SHOW POOLS follow a server connection through PgBouncer's states: {@code used}
   * once it sat idle past {@code server_check_delay}, {@code tested} while the check before its
   * next use runs (held here by stopping its backend with SIGSTOP), then back in the pool.
   */
  @Test
  void showServersFollowsAConnectionThroughUsedAndTested() throws Exception {
    proxy.close();
    proxy =
        RunningProxy.start(
            "pool: { mode: transaction, size: 1, wait_timeout: 30s, server_check_delay: 1s }\n"
                + "auth: { type: trust, admin_users: admin }\n"
                + databases);
    try (Connection c = app()) {
      c.createStatement().execute("SELECT 1");
    }
    await().atMost(Duration.ofSeconds(10)).until(() -> "used".equals(onlyServer().get("state")));
    assertThat(appPool()).containsEntry("sv_used", "1").containsEntry("sv_idle", "0");
    String pid = onlyServer().get("remote_pid");
    signal("STOP", pid);
    CompletableFuture<Integer> query;
    try {
      query = selectLater(2);
      await()
          .atMost(Duration.ofSeconds(10))
          .until(() -> "tested".equals(onlyServer().get("state")));
      assertThat(appPool())
          .containsEntry("sv_tested", "1")
          .containsEntry("sv_used", "0")
          .containsEntry("cl_active", "1");
    } finally {
      signal("CONT", pid);
    }
    assertThat(query.get(10, TimeUnit.SECONDS)).isEqualTo(2);
    await()
        .atMost(Duration.ofSeconds(10))
        .untilAsserted(
            () ->
                assertThat(appPool())
                    .containsEntry("sv_tested", "0")
                    .containsEntry("sv_active", "0")
                    .containsEntry("cl_active", "0"));
    assertThat(onlyServer().get("state")).isIn("idle", "used");
  }

  /** {@code SELECT n} through the proxy on another thread, from login to answer. */
  CompletableFuture<Integer> selectLater(int n) {
    return CompletableFuture.supplyAsync(
        () -> {
          try (Connection c = app();
              ResultSet rs = c.createStatement().executeQuery("SELECT " + n)) {
            rs.next();
            return rs.getInt(1);
          } catch (SQLException e) {
            throw new RuntimeException(e);
          }
        });
  }

  Map<String, String> onlyServer() throws SQLException {
    List<Map<String, String>> servers = admin("SHOW SERVERS");
    assertThat(servers).hasSize(1);
    return servers.get(0);
  }

  static void signal(String signal, String pid) throws Exception {
    Process kill = new ProcessBuilder("kill", "-" + signal, pid).inheritIO().start();
    assertThat(kill.waitFor()).as("kill -%s %s", signal, pid).isZero();
  }

  @Test
  void showPoolsAgreesWithActiveAndWaitingClients() throws Exception {
    try (Connection holder = app()) {
      holder.setAutoCommit(false);
      holder.createStatement().execute("SELECT 1"); // BEGIN + SELECT: holds the only server
      CompletableFuture<Integer> waiter = selectLater(2);
      await().atMost(Duration.ofSeconds(10)).until(() -> "1".equals(appPool().get("cl_waiting")));
      Map<String, String> pool = appPool();
      assertThat(pool)
          .containsEntry("user", "postgres")
          .containsEntry("cl_active", "1")
          .containsEntry("cl_waiting", "1")
          .containsEntry("sv_active", "1")
          .containsEntry("sv_idle", "0")
          .containsEntry("pool_mode", "transaction");
      List<Map<String, String>> clients = admin("SHOW CLIENTS");
      assertThat(clients).extracting(r -> r.get("state")).contains("active", "waiting");
      assertThat(admin("SHOW SERVERS"))
          .singleElement()
          .satisfies(s -> assertThat(s.get("state")).isEqualTo("active"));
      holder.commit();
      assertThat(waiter.get(10, TimeUnit.SECONDS)).isEqualTo(2);
    }
    await()
        .atMost(Duration.ofSeconds(10))
        .untilAsserted(
            () ->
                assertThat(appPool())
                    .containsEntry("cl_active", "0")
                    .containsEntry("cl_waiting", "0")
                    .containsEntry("sv_active", "0")
                    .containsEntry("sv_idle", "1"));
  }

  @Test
  void showStatsCountsQueriesAndTransactions() throws Exception {
    try (WireClient c = new WireClient(proxy.port())) {
      c.startup("postgres", "app");
      c.readUntilReady();
      for (int i = 0; i < 5; i++) {
        c.send(WireClient.query("SELECT " + i));
        c.readUntilReady();
      }
      c.send(WireClient.query("BEGIN"));
      c.readUntilReady();
      c.send(WireClient.query("SELECT 'in tx'"));
      c.readUntilReady();
      c.send(WireClient.query("COMMIT"));
      c.readUntilReady();
    }
    Map<String, String> stats = admin("SHOW STATS").get(0);
    assertThat(stats).containsEntry("database", "app");
    assertThat(stats.get("total_query_count")).isEqualTo("8");
    assertThat(stats.get("total_xact_count")).isEqualTo("6"); // 5 implicit + 1 explicit
    assertThat(Long.parseLong(stats.get("total_received"))).isPositive();
    assertThat(Long.parseLong(stats.get("total_sent"))).isPositive();
    assertThat(admin("SHOW DATABASES").get(0))
        .containsEntry("name", "app")
        .containsEntry("pool_size", "1")
        .containsEntry("pool_mode", "transaction");
    assertThat(admin("SHOW VERSION").get(0).get("version")).startsWith("CryoProxy ");
    assertThat(admin("SHOW CONFIG")).extracting(r -> r.get("key")).contains("pool.size");
  }

  @Test
  void pauseHoldsClientsUntilResume() throws Exception {
    admin("PAUSE app");
    CompletableFuture<Integer> held = selectLater(3);
    await()
        .during(Duration.ofMillis(500))
        .atMost(Duration.ofSeconds(5))
        .until(() -> !held.isDone());
    assertThat(admin("SHOW DATABASES").get(0)).containsEntry("paused", "1");
    admin("RESUME app");
    assertThat(held.get(10, TimeUnit.SECONDS)).isEqualTo(3);
  }

  @Test
  void reloadAppliesANewPoolSizeWithoutDroppingClients() throws Exception {
    try (Connection c = app()) {
      assertThat(one(c, "SELECT 1")).isEqualTo("1");
      Path file = proxy.configFile();
      String text = Files.readString(file).replace("size: 1,", "size: 4,");
      Files.writeString(file, text);
      admin("RELOAD");
      assertThat(admin("SHOW DATABASES").get(0)).containsEntry("pool_size", "4");
      assertThat(appPool().get("cl_active")).isNotNull();
      assertThat(one(c, "SELECT 2")).isEqualTo("2"); // the client never noticed
      // A file that does not parse: RELOAD says why, nothing changes, the console goes on.
      Files.writeString(file, text + "pool: [ not, a, map ]\n");
      assertThatThrownBy(() -> admin("RELOAD"))
          .isInstanceOf(SQLException.class)
          .hasMessageContaining("RELOAD failed");
      assertThat(admin("SHOW DATABASES").get(0)).containsEntry("pool_size", "4");
      assertThat(one(c, "SELECT 3")).isEqualTo("3");
    }
  }

  @Test
  void killEndsTheDatabasesClients() throws Exception {
    try (Connection c = app()) {
      assertThat(one(c, "SELECT 1")).isEqualTo("1");
      admin("KILL app");
      assertThatThrownBy(() -> one(c, "SELECT 1")).isInstanceOf(SQLException.class);
    }
    try (Connection c = app()) {
      assertThat(one(c, "SELECT 4")).isEqualTo("4"); // new clients are welcome again
    }
  }

  /**
   * Trust mode lets a client name any role: each name gets a pool. Pools left empty for {@code
   * pool.server_idle_timeout} are forgotten, so a stream of made-up names cannot grow the proxy (or
   * its metric labels) without bound; a pool in use stays.
   */
  @Test
  void emptyPoolsOfMadeUpRolesAreForgotten() throws Exception {
    proxy.close();
    proxy =
        RunningProxy.start(
            "pool: { mode: transaction, size: 1, server_idle_timeout: 2s }\n"
                + "auth: { type: trust, admin_users: admin }\n"
                + databases);
    for (int i = 0; i < 20; i++) {
      int n = i;
      assertThatThrownBy(() -> proxy.connect("app", "nobody_" + n, null).close())
          .isInstanceOf(SQLException.class);
    }
    try (Connection c = app()) {
      assertThat(one(c, "SELECT 1")).isEqualTo("1");
      List<String> users = console("admin", "SHOW POOLS").stream().map(r -> r.get("user")).toList();
      assertThat(users).contains("postgres", "nobody_0", "nobody_19");
      await()
          .atMost(java.time.Duration.ofSeconds(15))
          .until(
              () ->
                  console("admin", "SHOW POOLS").stream()
                      .noneMatch(r -> r.get("user").startsWith("nobody_")));
      assertThat(console("admin", "SHOW POOLS"))
          .as("the pool of a connected client stays")
          .anySatisfy(r -> assertThat(r.get("user")).isEqualTo("postgres"));
      assertThat(one(c, "SELECT 2")).isEqualTo("2");
    }
  }

  /** {@code auth.stats_users}: every SHOW, and nothing that changes anything (42501). */
  @Test
  void statsUsersMayLookButNotTouch() throws Exception {
    try (Connection c = app()) {
      assertThat(one(c, "SELECT 1")).isEqualTo("1");
      assertThat(console("watcher", "SHOW POOLS"))
          .anySatisfy(r -> assertThat(r.get("database")).isEqualTo("app"));
      assertThat(console("watcher", "SHOW CLIENTS")).isNotEmpty();
      for (String command : List.of("PAUSE app", "RESUME app", "KILL app", "RELOAD", "SHUTDOWN")) {
        assertThatThrownBy(() -> console("watcher", command))
            .as(command)
            .isInstanceOf(SQLException.class)
            .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("42501"));
      }
      assertThat(one(c, "SELECT 2")).as("nothing was paused or killed").isEqualTo("2");
    }
  }

  @Test
  void onlyAdminUsersMayConnect() {
    Properties props = new Properties();
    props.setProperty("user", "postgres");
    assertThatThrownBy(() -> DriverManager.getConnection(proxy.jdbcUrl("pgbouncer"), props))
        .isInstanceOf(SQLException.class)
        .satisfies(e -> assertThat(((SQLException) e).getSQLState()).isEqualTo("28000"));
  }

  @Test
  void psqlShowsThePools() throws Exception {
    Path psql = ClientToolsIT.tool("psql");
    ClientTools.requireTool(Files.isExecutable(psql), "psql is needed (postgresql-client)");
    try (Connection c = app()) {
      one(c, "SELECT 1");
    }
    ProcessBuilder builder =
        new ProcessBuilder(
                psql.toString(),
                "-h",
                "127.0.0.1",
                "-p",
                String.valueOf(proxy.port()),
                "-U",
                "admin",
                "-d",
                "pgbouncer",
                "-A",
                "-t",
                "-F",
                "|",
                "-c",
                "SHOW POOLS")
            .redirectErrorStream(true);
    builder.environment().put("PGSSLMODE", "disable");
    Process p = builder.start();
    String out = new String(p.getInputStream().readAllBytes());
    assertThat(p.waitFor(30, TimeUnit.SECONDS)).isTrue();
    assertThat(p.exitValue()).as(out).isZero();
    // database|user|cl_active|cl_waiting|...|sv_idle|...|pool_mode
    assertThat(out.trim()).startsWith("app|postgres|0|0|").endsWith("|transaction");
    assertThat(out.trim().split("\\|")[9]).isEqualTo("1"); // sv_idle: the one connection used
  }

  private static String one(Connection c, String sql) throws SQLException {
    try (ResultSet rs = c.createStatement().executeQuery(sql)) {
      rs.next();
      return rs.getString(1);
    }
  }
}

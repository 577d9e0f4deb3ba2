package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.embedded.PgNode;
import org.cryoprotect.proxy.pool.ServerPool;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.DashboardQueries;
import org.cryoprotect.proxy.testing.DashboardQueries.Kind;
import org.cryoprotect.proxy.testing.DashboardQueries.Query;
import org.cryoprotect.proxy.testing.Exposition;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.PrometheusServer;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.cryoprotect.proxy.testing.WireClient;
import org.cryoprotect.proxy.testing.WireClient.Message;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Issue 5's monitoring acceptance against a real proxy, PostgreSQL primary and replica, and a real
 * Prometheus: every dashboard and alert query returns data after a mixed workload (acceptance 1),
 * and the counters equal the known counts of a scripted one (acceptance 4).
 */
@PgTest(replicas = 1)
class MonitoringIT {
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  private static final String USER = PgCluster.SUPERUSER;
  private static final String PASSWORD = PgCluster.SUPERUSER_PASSWORD;
  private static final Duration SCRAPE = Duration.ofMillis(500);

  /** A trailing threshold: {@code expr > 0.8}, {@code expr == 2}. */
  private static final Pattern THRESHOLD =
      Pattern.compile(
          "^(.*\\S)\\s*(==|!=|>=|<=|>|<)\\s*(bool\\s+)?[-+]?[0-9.]+([eE][-+]?\\d+)?\\s*$",
          Pattern.DOTALL);

  /** A set operator and its vector matching clause, in {@link #operands}' masked copy. */
  private static final Pattern SET_OPERATOR =
      Pattern.compile(
          "(?<![\\w:])(?:and|or|unless)(?![\\w:])(?:\\s*(?:on|ignoring)\\s*\\([^)]*\\))?",
          Pattern.CASE_INSENSITIVE);

  @TempDir static Path dir;
  static Path usersFile;

  @BeforeAll
  static void users() throws IOException {
    usersFile = dir.resolve("userlist.txt");
    Files.writeString(usersFile, "\"" + USER + "\" \"" + PASSWORD + "\"\n");
  }

  /** md5 client authentication from the users file; the cluster itself trusts the proxy. */
  private static String config(String pool, PgNode primary, List<PgNode> replicas) {
    StringBuilder yaml = new StringBuilder();
    yaml.append("health: { interval: 500ms }\n");
    yaml.append("auth:\n  type: md5\n  users_file: ").append(usersFile).append('\n');
    yaml.append("pool: { ").append(pool).append(" }\n");
    yaml.append("databases:\n  app:\n    dbname: postgres\n");
    yaml.append("    primary: { host: ")
        .append(primary.host())
        .append(", port: ")
        .append(primary.port())
        .append(" }\n");
    if (!replicas.isEmpty()) {
      yaml.append("    replicas: [");
      for (int i = 0; i < replicas.size(); i++) {
        PgNode r = replicas.get(i);
        yaml.append(i == 0 ? " " : ", ")
            .append("{ host: ")
            .append(r.host())
            .append(", port: ")
            .append(r.port())
            .append(" }");
      }
      yaml.append(" ]\n");
    }
    return yaml.toString();
  }

  private static Exposition scrape(RunningProxy proxy) throws Exception {
    HttpResponse<String> response =
        HTTP.send(
            HttpRequest.newBuilder(proxy.adminUri("/metrics"))
                .timeout(Duration.ofSeconds(10))
                .build(),
            HttpResponse.BodyHandlers.ofString());
    assertThat(response.statusCode()).isEqualTo(200);
    return Exposition.parse(response.body());
  }

  private static int queryInt(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      assertThat(rs.next()).isTrue();
      return rs.getInt(1);
    }
  }

  private static void assertSqlState(Throwable e, String state) {
    assertThat(e).isInstanceOf(SQLException.class);
    assertThat(((SQLException) e).getSQLState()).isEqualTo(state);
  }

  // ------------------------------------------------------------------ acceptance 1

  /**
   * A mixed workload through pgJDBC (queries, transactions, server errors, prepared statements, a
   * pool wait, a LISTEN pin, a wrong password, disconnects), then a replica killed: Prometheus,
   * scraping the admin endpoint, must accept every dashboard and alert expression, and each must
   * return data. An alert's full expression is empty unless it fires, so its left-hand side (the
   * expression without the threshold) must return data instead.
   */
  @Test
  void everyDashboardAndAlertQueryReturnsDataAfterAMixedWorkload(PgCluster pg) throws Exception {
    ClientTools.requireTool(PrometheusServer.binary().isPresent(), "prometheus not installed");
    // A materialized view refreshed every second, for the "Materialized views" row (sql/ V6).
    try (Connection c = pg.primary().connect();
        Statement st = c.createStatement()) {
      for (String migration : List.of("V4__cache_invalidation.sql", "V6__view_refresh.sql")) {
        try (var in = getClass().getResourceAsStream("/sql/migrations/" + migration)) {
          st.execute(new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8));
        }
      }
      st.execute("CREATE MATERIALIZED VIEW IF NOT EXISTS monitoring_mv AS SELECT 1 AS id");
      st.execute("CREATE UNIQUE INDEX IF NOT EXISTS monitoring_mv_id ON monitoring_mv (id)");
    }
    try (RunningProxy proxy =
            RunningProxy.start(
                config("mode: transaction, size: 2, wait_timeout: 10s", pg.primary(), pg.replicas())
                    + "refresh_views:\n  - { database: app, view: public.monitoring_mv, every: 1s }\n");
        PrometheusServer prometheus =
            PrometheusServer.start(
                "cryoproxy",
                List.of("127.0.0.1:" + proxy.server().adminAddress().getPort()),
                SCRAPE,
                DashboardQueries.ruleFiles())) {
      prometheus.awaitUp(Duration.ofSeconds(30));

      try (Connection c = proxy.connect("app", USER, PASSWORD)) {
        for (int i = 0; i < 5; i++) {
          assertThat(queryInt(c, "SELECT count(*) FROM generate_series(1, 100)")).isEqualTo(100);
        }
        c.setAutoCommit(false);
        assertThat(queryInt(c, "SELECT 1")).isEqualTo(1);
        assertThat(queryInt(c, "SELECT 2")).isEqualTo(2);
        c.commit();
        c.setAutoCommit(true);
        for (int i = 0; i < 3; i++) {
          assertThatThrownBy(() -> queryInt(c, "SELECT 1/0"))
              .satisfies(e -> assertSqlState(e, "22012"));
        }
        // Past pgJDBC's prepareThreshold (5) the statement is prepared on the server.
        try (PreparedStatement ps = c.prepareStatement("SELECT ?::int + 1")) {
          for (int i = 0; i < 8; i++) {
            ps.setInt(1, i);
            try (ResultSet rs = ps.executeQuery()) {
              assertThat(rs.next()).isTrue();
              assertThat(rs.getInt(1)).isEqualTo(i + 1);
            }
          }
        }
      }

      // A pool wait: both server connections inside transactions, a third client queues.
      try (Connection h1 = proxy.connect("app", USER, PASSWORD);
          Connection h2 = proxy.connect("app", USER, PASSWORD);
          Connection waiter = proxy.connect("app", USER, PASSWORD)) {
        h1.setAutoCommit(false);
        h2.setAutoCommit(false);
        queryInt(h1, "SELECT 1");
        queryInt(h2, "SELECT 1");
        CompletableFuture<Integer> waited =
            CompletableFuture.supplyAsync(
                () -> {
                  try {
                    // A read would go to the replica's pool: the hint keeps it on the primary's.
                    return queryInt(waiter, "/* cryoproxy:primary */ SELECT 42");
                  } catch (SQLException e) {
                    throw new RuntimeException(e);
                  }
                });
        Thread.sleep(3 * SCRAPE.toMillis()); // long enough for a scrape to see the waiter
        assertThat(waited).isNotDone();
        h1.commit();
        assertThat(waited.get(10, TimeUnit.SECONDS)).isEqualTo(42);
        h2.commit();
      }

      // A pin: LISTEN keeps the server connection for the session.
      try (Connection c = proxy.connect("app", USER, PASSWORD);
          Statement s = c.createStatement()) {
        s.execute("LISTEN monitoring_it");
        assertThat(queryInt(c, "SELECT 3")).isEqualTo(3);
      }

      assertThatThrownBy(() -> proxy.connect("app", USER, "wrong").close())
          .satisfies(e -> assertSqlState(e, "28P01"));

      Exposition seen = scrape(proxy);
      assertThat(seen.value("cryoproxy_pins_total", "reason", "listen")).isEqualTo(1);
      assertThat(seen.value("cryoproxy_auth_failures_total", "reason", "wrong_password"))
          .isEqualTo(1);
      assertThat(seen.value("cryoproxy_errors_total", "class", "22", "origin", "server"))
          .isEqualTo(3);
      assertThat(seen.value("cryoproxy_server_prepares_total")).isPositive();
      double acquisitions = seen.sum("cryoproxy_acquire_seconds_count");
      assertThat(acquisitions - seen.sum("cryoproxy_acquire_seconds_bucket", "le", "0.25"))
          .as("checkouts that waited longer than 250 ms")
          .isGreaterThanOrEqualTo(1);

      // The replica dies: its probes fail, its node_up drops to 0.
      String replica = pg.replica(0).host() + ":" + pg.replica(0).port();
      pg.replica(0).kill();
      awaitData(
          prometheus, "cryoproxy_node_up{node=\"" + replica + "\"} == 0", Duration.ofSeconds(20));
      awaitData(
          prometheus,
          "rate(cryoproxy_probes_total{node=\"" + replica + "\", result=\"failed\"}[1m]) > 0",
          Duration.ofSeconds(20));

      // Every query, until all have data (rate() needs two samples of a new series) or time is up.
      List<String> problems = List.of();
      long deadline = System.nanoTime() + Duration.ofSeconds(15).toNanos();
      while (true) {
        problems = evaluateAll(prometheus);
        if (problems.isEmpty() || System.nanoTime() > deadline) {
          break;
        }
        Thread.sleep(SCRAPE.toMillis());
      }
      assertThat(problems).as("dashboard and alert queries that fail or return no data").isEmpty();

      JsonNode groups = prometheus.rules().path("groups");
      assertThat(groups.findValues("health"))
          .allSatisfy(h -> assertThat(h.asText()).isEqualTo("ok"));
    }
  }

  /** Problems of every dashboard and alert expression: rejected by Prometheus, or no data. */
  private static List<String> evaluateAll(PrometheusServer prometheus) throws Exception {
    List<String> problems = new ArrayList<>();
    for (Query q : DashboardQueries.all()) {
      try {
        JsonNode data = prometheus.query(q.promql()); // must parse, alerts included
        if (q.kind() != Kind.ALERT) {
          if (data.path("result").isEmpty()) {
            problems.add("no data: " + q);
          }
          continue;
        }
        for (String part : alertParts(q.promql())) {
          if (prometheus.query(part).path("result").isEmpty()) {
            problems.add("no data: " + q + " (evaluated as " + part + ")");
          }
        }
      } catch (IllegalArgumentException e) {
        problems.add("rejected: " + q + ": " + e.getMessage());
      }
    }
    return problems;
  }

  /**
   * What must return data for an alert that is not firing: each operand of a top-level {@code and},
   * {@code or} or {@code unless} on its own (an alert with two conditions), as its expression
   * without its trailing threshold, or, without one, each metric it selects.
   */
  static List<String> alertParts(String promql) {
    List<String> parts = new ArrayList<>();
    for (String operand : operands(promql)) {
      Matcher m = THRESHOLD.matcher(operand);
      if (m.matches()) {
        parts.add(m.group(1));
      } else {
        DashboardQueries.metricNames(operand).stream()
            .map(n -> n + "{job=\"cryoproxy\"}")
            .forEach(parts::add);
      }
    }
    return parts;
  }

  /**
   * {@code promql} cut at its top-level set operators (with their {@code on}/{@code ignoring}
   * clause): those outside brackets and strings, found in a copy where everything inside them is
   * blanked out.
   */
  static List<String> operands(String promql) {
    char[] masked = promql.toCharArray();
    int depth = 0;
    char quote = 0;
    for (int i = 0; i < masked.length; i++) {
      char c = masked[i];
      if (quote != 0) {
        if (c == '\\' && i + 1 < masked.length) {
          masked[i++] = '_';
        } else if (c == quote) {
          quote = 0;
        }
        masked[i] = '_';
      } else if (c == '"' || c == '\'' || c == '`') {
        quote = c;
        masked[i] = '_';
      } else if (c == '(' || c == '[' || c == '{') {
        depth++;
      } else if (c == ')' || c == ']' || c == '}') {
        depth--;
      } else if (depth > 0) {
        masked[i] = '_';
      }
    }
    List<String> operands = new ArrayList<>();
    Matcher m = SET_OPERATOR.matcher(new String(masked));
    int from = 0;
    while (m.find()) {
      operands.add(promql.substring(from, m.start()).trim());
      from = m.end();
    }
    operands.add(promql.substring(from).trim());
    return operands;
  }

  private static void awaitData(PrometheusServer prometheus, String promql, Duration timeout)
      throws Exception {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (prometheus.query(promql).path("result").isEmpty()) {
      if (System.nanoTime() > deadline) {
        throw new AssertionError("no data within " + timeout + " for " + promql);
      }
      Thread.sleep(SCRAPE.toMillis() / 2);
    }
  }

  // ------------------------------------------------------------------ acceptance 4

  /** Logs in with md5 over the raw protocol: nothing is sent that the test does not count. */
  private static WireClient login(int port, String password) throws Exception {
    WireClient c = new WireClient(port);
    c.startup(USER, "app");
    Message challenge = c.read();
    assertThat(challenge.type()).isEqualTo('R');
    assertThat(challenge.authCode()).as("AuthenticationMD5Password").isEqualTo(5);
    byte[] salt = Arrays.copyOfRange(challenge.body(), 4, 8);
    String inner = md5Hex((password + USER).getBytes(StandardCharsets.UTF_8));
    byte[] innerBytes = inner.getBytes(StandardCharsets.US_ASCII);
    byte[] salted = Arrays.copyOf(innerBytes, innerBytes.length + 4);
    System.arraycopy(salt, 0, salted, innerBytes.length, 4);
    String response = "md5" + md5Hex(salted) + "\0";
    c.send(WireClient.message('p', response.getBytes(StandardCharsets.US_ASCII)));
    return c;
  }

  private static String md5Hex(byte[] bytes) throws NoSuchAlgorithmException {
    return HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(bytes));
  }

  /** Sends one simple query and reads to ReadyForQuery; returns its SQLSTATE or null. */
  private static String run(WireClient c, String sql, List<Integer> sentBytes) throws IOException {
    byte[] message = WireClient.query(sql);
    sentBytes.add(message.length);
    c.send(message);
    Message error = c.readUntilReady();
    return error == null ? null : error.sqlState();
  }

  /**
   * A scripted workload over the raw protocol with known counts; the counters of {@code /metrics}
   * must equal them, and the acquisition histogram must count exactly the pool's checkouts.
   */
  @Test
  void countersEqualTheKnownCountsOfAScriptedWorkload(PgCluster pg) throws Exception {
    final int clients = 3;
    final int goodPerClient = 4;
    final int errorsPerClient = 1;
    try (RunningProxy proxy =
        RunningProxy.start(config("mode: transaction, size: 2", pg.primary(), List.of()))) {
      List<Integer> sent = new ArrayList<>();
      List<WireClient> open = new ArrayList<>();
      try {
        for (int i = 0; i < clients; i++) {
          WireClient c = login(proxy.port(), PASSWORD);
          assertThat(c.readUntilReady()).as("login error").isNull();
          open.add(c);
        }
        for (WireClient c : open) {
          for (int q = 0; q < goodPerClient; q++) {
            assertThat(run(c, "SELECT " + q, sent)).isNull();
          }
          for (int q = 0; q < errorsPerClient; q++) {
            assertThat(run(c, "SELECT 1/0", sent)).isEqualTo("22012");
          }
        }
        // One explicit transaction: three queries, one transaction.
        assertThat(run(open.get(0), "BEGIN", sent)).isNull();
        assertThat(run(open.get(0), "SELECT 1", sent)).isNull();
        assertThat(run(open.get(0), "COMMIT", sent)).isNull();

        try (WireClient wrong = login(proxy.port(), "wrong")) {
          assertThat(wrong.readError().sqlState()).isEqualTo("28P01");
          assertThat(wrong.closedByPeer()).isTrue();
        }
      } finally {
        for (WireClient c : open) {
          c.send(WireClient.message('X', new byte[0]));
          c.close();
        }
      }
      int queries = clients * (goodPerClient + errorsPerClient) + 3;
      int transactions = clients * (goodPerClient + errorsPerClient) + 1;
      assertThat(sent).hasSize(queries);

      long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
      while (proxy.server().clientCount() > 0 && System.nanoTime() < deadline) {
        Thread.sleep(20);
      }
      assertThat(proxy.server().clientCount()).as("clients still connected").isZero();

      Exposition e = scrape(proxy);
      List<ServerPool.Stats> pools = proxy.server().pools().stats();
      long checkouts = pools.stream().mapToLong(ServerPool.Stats::checkouts).sum();
      String[] app = {"database", "app"};
      String[] primary = {"database", "app", "route", "primary"};

      Map<String, Double> actual = new LinkedHashMap<>();
      Map<String, Double> expected = new LinkedHashMap<>();
      check(actual, expected, "logins", e.sum("cryoproxy_client_logins_total", app), clients);
      check(
          actual,
          expected,
          "disconnects",
          e.sum("cryoproxy_client_disconnects_total", app),
          clients);
      check(
          actual,
          expected,
          "auth failures (wrong_password)",
          e.sum("cryoproxy_auth_failures_total", "reason", "wrong_password"),
          1);
      check(actual, expected, "auth failures", e.sum("cryoproxy_auth_failures_total"), 1);
      check(
          actual,
          expected,
          "errors class 22 from the server",
          e.sum("cryoproxy_errors_total", "class", "22", "origin", "server"),
          clients * errorsPerClient);
      check(
          actual,
          expected,
          "errors from the server",
          e.sum("cryoproxy_errors_total", "origin", "server"),
          clients * errorsPerClient);
      check(actual, expected, "queries", e.sum("cryoproxy_query_seconds_count", primary), queries);
      check(
          actual,
          expected,
          "transactions",
          e.sum("cryoproxy_transaction_seconds_count", primary),
          transactions);
      check(
          actual,
          expected,
          "acquisitions = pool checkouts",
          e.sum("cryoproxy_acquire_seconds_count", app),
          checkouts);
      check(
          actual,
          expected,
          "bytes in = the query messages sent",
          e.sum("cryoproxy_bytes_total", "direction", "in"),
          sent.stream().mapToInt(Integer::intValue).sum());
      check(
          actual,
          expected,
          "bytes out = pool statistics",
          e.sum("cryoproxy_bytes_total", "direction", "out"),
          pools.stream().mapToLong(ServerPool.Stats::bytesSent).sum());
      check(
          actual,
          expected,
          "queries = pool statistics",
          e.sum("cryoproxy_query_seconds_count", primary),
          pools.stream().mapToLong(ServerPool.Stats::queries).sum());
      assertThat(actual).isEqualTo(expected);
      // Every transaction needed a server connection: at least that many checkouts.
      assertThat(checkouts).isGreaterThanOrEqualTo(transactions);
    }
  }

  private static void check(
      Map<String, Double> actual, Map<String, Double> expected, String what, double a, double x) {
    actual.put(what, a);
    expected.put(what, x);
  }
}

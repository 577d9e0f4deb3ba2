package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.awaitility.Awaitility.await;

import java.io.ByteArrayOutputStream;
import java.net.ServerSocket;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * The audit trail of the service roles: every statement a session of an audited role completes has
 * its record journaled on disk before the client hears of the completion, and the writer copies it
 * into {@code audit.service_role_log}, through database restarts and a {@code kill -9} of the
 * proxy, exactly once.
 */
@PgTest
class AuditIT {
  static PgCluster pg;
  @TempDir static Path dir;
  static Path users;

  @BeforeAll
  static void start(PgCluster cluster) throws Exception {
    pg = cluster;
    pg.createDatabase("auditdb");
    Path migrate = dir.resolve("migrate.yaml");
    Files.writeString(
        migrate,
        "migrate: { user: postgres, password: "
            + PgCluster.SUPERUSER_PASSWORD
            + " }\n"
            + RunningProxy.database("app", "auditdb", "127.0.0.1", pg.primary().port()));
    int exit =
        new CommandLine(new org.cryoprotect.proxy.cli.Main())
            .setOut(new java.io.PrintWriter(new ByteArrayOutputStream()))
            .execute("migrate", "--config", migrate.toString());
    assertThat(exit).isZero();
    pg.primary()
        .sql(
            "auditdb",
            "ALTER ROLE service_write PASSWORD 'write-pw';"
                + " CREATE TABLE items (c int NOT NULL, k int NOT NULL);"
                + " GRANT SELECT, INSERT ON items TO service_write");
    users = dir.resolve("users.txt");
    Files.writeString(
        users,
        "\"service_write\" \"write-pw\"\n\"postgres\" \"" + PgCluster.SUPERUSER_PASSWORD + "\"\n");
  }

  static String config(Path journal) {
    return "pool: { mode: transaction, size: 4, wait_timeout: 20s }\n"
        + "auth: { type: scram-sha-256, users_file: "
        + users
        + " }\n"
        + "audit: { roles: service_write, journal_dir: "
        + journal
        + " }\n"
        + "resilience: { retry: { attempts: 10, backoff: 50ms, max_backoff: 500ms } }\n"
        + RunningProxy.database("app", "auditdb", "127.0.0.1", pg.primary().port());
  }

  static List<List<String>> log(String where) {
    return pg.primary()
        .sql(
            "auditdb",
            "SELECT statement, coalesce(row_count::text, '-'), coalesce(sqlstate, '-'), role, sub,"
                + " host(client_addr), journal, seq FROM audit.service_role_log WHERE "
                + where
                + " ORDER BY seq");
  }

  @Test
  void everyStatementOfAnAuditedRoleIsRecordedWithItsOutcome() throws Exception {
    try (RunningProxy proxy = RunningProxy.start(config(dir.resolve("journal-a")))) {
      try (Connection c = proxy.connect("app", "service_write", "write-pw");
          Statement s = c.createStatement()) {
        s.executeUpdate("INSERT INTO items VALUES (0, 1)");
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO items VALUES (?, ?)")) {
          for (int i = 0; i < 6; i++) { // named and server-prepared from the fifth on
            ps.setInt(1, 0);
            ps.setInt(2, 10 + i);
            ps.executeUpdate();
          }
        }
        try (var rs = s.executeQuery("SELECT count(*) FROM items WHERE c = 0")) {
          rs.next();
        }
        try {
          s.executeQuery("SELECT 1/0 AS items_fail");
        } catch (SQLException expected) {
          assertThat(expected.getSQLState()).isEqualTo("22012");
        }
      }
      try (Connection c =
              proxy.connect("app", "service_write", "write-pw", "preferQueryMode", "simple");
          Statement s = c.createStatement()) {
        s.execute("INSERT INTO items VALUES (0, 100); INSERT INTO items VALUES (0, 101)");
      }
      try (Connection c = proxy.connect("app", "postgres", PgCluster.SUPERUSER_PASSWORD);
          Statement s = c.createStatement()) {
        s.execute("SELECT count(*) FROM items /* not audited */");
      }
      String mine =
          "journal = '"
              + Files.readString(dir.resolve("journal-a").resolve("journal.id")).trim()
              + "' AND statement LIKE '%items%'";
      await().atMost(Duration.ofSeconds(15)).until(() -> log(mine).size() >= 10);
      List<List<String>> rows = log(mine);
      List<List<String>> essentials = rows.stream().map(r -> r.subList(0, 5)).toList();
      List<List<String>> expected = new ArrayList<>();
      expected.add(List.of("INSERT INTO items VALUES (0, 1)", "1", "-"));
      for (int i = 0; i < 6; i++) {
        expected.add(List.of("INSERT INTO items VALUES ($1, $2)", "1", "-"));
      }
      expected.add(List.of("SELECT count(*) FROM items WHERE c = 0", "1", "-"));
      expected.add(List.of("SELECT 1/0 AS items_fail", "-", "22012"));
      // One simple Query of two statements: a record for each, with the Query's whole text.
      String both = "INSERT INTO items VALUES (0, 100); INSERT INTO items VALUES (0, 101)";
      expected.add(List.of(both, "1", "-"));
      expected.add(List.of(both, "1", "-"));
      assertThat(essentials.stream().map(r -> r.subList(0, 3)).toList())
          .as("%s", rows)
          .containsExactlyElementsOf(expected);
      for (List<String> r : rows) {
        assertThat(r.subList(3, 6)).containsExactly("service_write", "service_write", "127.0.0.1");
      }
      // What a record costs a lone client: the same statements audited and not.
      double audited = perStatementMicros(proxy, "service_write", "write-pw");
      double plain = perStatementMicros(proxy, "postgres", PgCluster.SUPERUSER_PASSWORD);
      System.out.printf(
          "[AuditIT] one client, 2,000 statements: %.0f us each audited, %.0f us not audited%n",
          audited, plain);
      await()
          .atMost(Duration.ofSeconds(15))
          .until(
              () ->
                  new String(
                          proxy.adminUri("/metrics").toURL().openStream().readAllBytes(),
                          StandardCharsets.UTF_8)
                      .contains("cryoproxy_audit_pending_records 0.0"));
      String metrics =
          new String(
              proxy.adminUri("/metrics").toURL().openStream().readAllBytes(),
              StandardCharsets.UTF_8);
      assertThat(metrics).contains("cryoproxy_audit_pending_records 0.0");
      assertThat(metrics).contains("cryoproxy_audit_records_total{state=\"dropped\"} 0.0");
    }
  }

  /**
   * {@code parameters: true}: a bound statement's record carries its values as a JSON array (text
   * as sent, binary as hex, NULL as null); a simple Query's has none (its values are in its text).
   * Through pgJDBC, whose int goes in binary.
   */
  @Test
  void parametersAreRecordedWhenAsked() throws Exception {
    Path journal = dir.resolve("journal-params");
    String withParameters =
        config(journal)
            .replace("journal_dir: " + journal, "journal_dir: " + journal + ", parameters: true");
    assertThat(withParameters).contains("parameters: true");
    try (RunningProxy proxy = RunningProxy.start(withParameters);
        Connection c = proxy.connect("app", "service_write", "write-pw");
        Statement s = c.createStatement()) {
      try (PreparedStatement ps =
          c.prepareStatement("SELECT ?::int AS p_items, ?::text, ?::text, ?::bytea")) {
        ps.setInt(1, 42);
        ps.setString(2, "it's \"quoted\"");
        ps.setNull(3, java.sql.Types.VARCHAR);
        ps.setBytes(4, new byte[] {1, (byte) 0xff});
        ps.executeQuery().close();
      }
      s.execute("SELECT 7 AS p_items"); // pgJDBC binds it too, with no values
      try (Connection simple =
              proxy.connect("app", "service_write", "write-pw", "preferQueryMode", "simple");
          Statement q = simple.createStatement()) {
        q.execute("SELECT 8 AS p_items");
      }
      String mine =
          "journal = '"
              + Files.readString(journal.resolve("journal.id")).trim()
              + "' AND statement LIKE '%p_items%'";
      await().atMost(Duration.ofSeconds(15)).until(() -> log(mine).size() >= 3);
      List<List<String>> rows =
          pg.primary()
              .sql(
                  "auditdb",
                  "SELECT statement, coalesce(parameters, '-') FROM audit.service_role_log WHERE "
                      + mine
                      + " ORDER BY seq");
      System.out.println("[AuditIT] recorded parameters: " + rows);
      assertThat(rows).hasSize(3);
      assertThat(rows.get(0).get(0))
          .isEqualTo("SELECT $1::int AS p_items, $2::text, $3::text, $4::bytea");
      // pgJDBC may send the int in binary: 42 either way
      String rest = ",\"it's \\\"quoted\\\"\",null,\"\\\\x01ff\"]";
      assertThat(rows.get(0).get(1)).isIn("[\"42\"" + rest, "[\"\\\\x0000002a\"" + rest);
      assertThat(rows.get(1)).containsExactly("SELECT 7 AS p_items", "[]");
      assertThat(rows.get(2)).containsExactly("SELECT 8 AS p_items", "-");
    }
  }

  /**
   * The writer cannot reach the table (its login does not exist), so the journal fills up to its 1
   * MB bound: with {@code on_full: block} the next transaction of an audited role is refused with
   * 53400 while other roles go on; with {@code on_full: drop} statements go on and every record
   * that found no room is counted as dropped.
   */
  @Test
  void aFullJournalFailsClosedOrDropsAndCounts() throws Exception {
    for (String onFull : List.of("block", "drop")) {
      String yaml =
          config(dir.resolve("journal-full-" + onFull))
              .replace(
                  "journal_dir: ",
                  "on_full: "
                      + onFull
                      + ", max_journal_bytes: 1mb, user: no_such_login,"
                      + " journal_dir: ");
      try (RunningProxy proxy = RunningProxy.start(yaml);
          Connection c = proxy.connect("app", "service_write", "write-pw");
          Statement s = c.createStatement()) {
        String padding = "x".repeat(2_000);
        SQLException refused = null;
        int ran = 0;
        for (int i = 0; i < 2_000 && refused == null; i++) {
          try {
            s.execute("SELECT '" + padding + "' AS items_" + onFull + "_" + i);
            ran++;
          } catch (SQLException e) {
            refused = e;
          }
        }
        String metrics =
            new String(
                proxy.adminUri("/metrics").toURL().openStream().readAllBytes(),
                StandardCharsets.UTF_8);
        System.out.printf(
            "[AuditIT] on_full %s: %d statements ran, then %s%n",
            onFull, ran, refused == null ? "none refused" : refused.getSQLState());
        if (onFull.equals("block")) {
          assertThat((Object) refused)
              .as("a statement refused once the journal was full")
              .isNotNull();
          assertThat(refused.getSQLState()).isEqualTo("53400");
          assertThat(ran).isBetween(300, 1_000); // about 1 MB of 2 kB records
          try (Connection other = proxy.connect("app", "postgres", PgCluster.SUPERUSER_PASSWORD);
              Statement o = other.createStatement()) {
            o.execute("SELECT 1"); // not audited: unaffected
          }
        } else {
          assertThat((Object) refused).isNull();
          assertThat(ran).isEqualTo(2_000);
          double dropped =
              metrics
                  .lines()
                  .filter(l -> l.startsWith("cryoproxy_audit_records_total{state=\"dropped\"}"))
                  .mapToDouble(l -> Double.parseDouble(l.substring(l.lastIndexOf(' ') + 1)))
                  .findFirst()
                  .orElse(0);
          assertThat(dropped).isGreaterThan(1_000);
        }
      }
    }
  }

  static double perStatementMicros(RunningProxy proxy, String user, String password)
      throws SQLException {
    try (Connection c = proxy.connect("app", user, password, "preferQueryMode", "simple");
        Statement s = c.createStatement()) {
      for (int i = 0; i < 200; i++) {
        s.execute("SELECT 1");
      }
      long start = System.nanoTime();
      for (int i = 0; i < 2_000; i++) {
        s.execute("SELECT 1");
      }
      return (System.nanoTime() - start) / 1e3 / 2_000;
    }
  }

  // ------------------------------------------------------------------ acceptance 5

  static final int CLIENTS = 8;
  static final int EACH = 1_250;

  /**
   * 10,000 statements under {@code service_write} from 8 clients while PostgreSQL restarts twice
   * and the proxy is killed with SIGKILL once and started again: afterwards the table holds exactly
   * one record for every statement whose completion a client received, in order per session.
   */
  @Test
  void noRecordIsLostOrDuplicatedThroughRestartsAndAKill() throws Exception {
    int port = freePort();
    int adminPort = freePort();
    Path config = dir.resolve("kill.yaml");
    Files.writeString(
        config,
        "listen: { host: 127.0.0.1, port: "
            + port
            + " }\nadmin: { host: 127.0.0.1, port: "
            + adminPort
            + " }\n"
            + config(dir.resolve("journal-kill")));
    Path out = dir.resolve("proxy.log");
    Process[] proxy = {launch(config, out)};
    Set<String> received = ConcurrentHashMap.newKeySet();
    AtomicInteger done = new AtomicInteger();
    AtomicInteger errors = new AtomicInteger();
    ExecutorService threads = Executors.newFixedThreadPool(CLIENTS);
    try {
      awaitUp(port);
      List<Future<?>> clients = new ArrayList<>();
      for (int c = 0; c < CLIENTS; c++) {
        int client = 10 + c;
        clients.add(
            threads.submit(
                () -> {
                  run(port, client, received, done, errors);
                  return null;
                }));
      }
      List<String> chaos = new ArrayList<>();
      int total = CLIENTS * EACH;
      awaitProgress(done, total / 5);
      pg.primary().restart();
      chaos.add("PostgreSQL restarted at " + done.get());
      awaitProgress(done, total * 9 / 20);
      long pid = proxy[0].pid();
      new ProcessBuilder("kill", "-9", String.valueOf(pid)).start().waitFor();
      proxy[0].waitFor(10, TimeUnit.SECONDS);
      chaos.add("proxy killed (SIGKILL) at " + done.get());
      Thread.sleep(500);
      proxy[0] = launch(config, out);
      awaitUp(port);
      chaos.add("proxy started again at " + done.get());
      awaitProgress(done, total * 7 / 10);
      pg.primary().restart();
      chaos.add("PostgreSQL restarted at " + done.get());
      for (Future<?> f : clients) {
        f.get(300, TimeUnit.SECONDS);
      }
      // The writer catches up with the journal.
      await()
          .atMost(Duration.ofSeconds(60))
          .ignoreExceptions()
          .until(() -> scrape(adminPort).contains("cryoproxy_audit_pending_records 0.0"));
      Map<String, Long> counts = new HashMap<>();
      for (List<String> r :
          pg.primary()
              .sql(
                  "auditdb",
                  "SELECT statement, count(*) FROM audit.service_role_log"
                      + " WHERE statement LIKE 'INSERT INTO items VALUES (1_, %' GROUP BY 1")) {
        counts.put(r.get(0), Long.parseLong(r.get(1)));
      }
      List<String> missing = new ArrayList<>();
      List<String> doubled = new ArrayList<>();
      for (String statement : received) {
        long n = counts.getOrDefault(statement, 0L);
        if (n == 0) {
          missing.add(statement);
        } else if (n > 1) {
          doubled.add(statement);
        }
      }
      long extra = counts.keySet().stream().filter(s -> !received.contains(s)).count();
      System.out.printf(
          "[AuditIT] %d statements sent by %d clients, %d completions received, %d errors;"
              + " %s; records: %d, missing %d, duplicated %d, %d more for statements whose"
              + " completion the client never received%n",
          total,
          CLIENTS,
          received.size(),
          errors.get(),
          chaos,
          counts.values().stream().mapToLong(Long::longValue).sum(),
          missing.size(),
          doubled.size(),
          extra);
      assertThat(received.size()).isGreaterThan(total * 9 / 10);
      assertThat(missing).as("completed statements without a record").isEmpty();
      assertThat(doubled).as("statements recorded twice").isEmpty();
      // In order per session: each client's records by journal sequence have increasing k.
      for (int c = 0; c < CLIENTS; c++) {
        List<Integer> ks =
            pg
                .primary()
                .sql(
                    "auditdb",
                    "SELECT statement FROM audit.service_role_log WHERE statement LIKE"
                        + " 'INSERT INTO items VALUES ("
                        + (10 + c)
                        + ", %' ORDER BY seq")
                .stream()
                .map(r -> Integer.parseInt(r.get(0).replaceAll(".*, (\\d+)\\)$", "$1")))
                .toList();
        assertThat(ks).as("client %d", 10 + c).isSorted();
      }
    } finally {
      threads.shutdownNow();
      proxy[0].destroy();
      if (!proxy[0].waitFor(20, TimeUnit.SECONDS)) {
        proxy[0].destroyForcibly();
      }
    }
  }

  /** One client: EACH inserts, each a new statement text, reconnecting whenever it must. */
  static void run(
      int port, int client, Set<String> received, AtomicInteger done, AtomicInteger errors)
      throws InterruptedException {
    Connection c = null;
    for (int k = 0; k < EACH; k++) {
      String sql = "INSERT INTO items VALUES (" + client + ", " + k + ")";
      try {
        if (c == null) {
          c = connect(port);
        }
        try (Statement s = c.createStatement()) {
          s.executeUpdate(sql);
        }
        received.add(sql);
      } catch (SQLException e) {
        errors.incrementAndGet();
        try {
          if (c != null && !c.isValid(2)) {
            c.close();
            c = null;
          }
        } catch (SQLException ignored) {
          c = null;
        }
        if (c == null) {
          Thread.sleep(100);
        }
      } finally {
        done.incrementAndGet();
      }
    }
    if (c != null) {
      try {
        c.close();
      } catch (SQLException ignored) {
        // gone
      }
    }
  }

  static Connection connect(int port) throws SQLException {
    Properties p = new Properties();
    p.setProperty("user", "service_write");
    p.setProperty("password", "write-pw");
    p.setProperty("preferQueryMode", "simple");
    p.setProperty("connectTimeout", "5");
    p.setProperty("socketTimeout", "30");
    return DriverManager.getConnection("jdbc:postgresql://127.0.0.1:" + port + "/app", p);
  }

  static Process launch(Path config, Path out) throws Exception {
    List<String> command = new ArrayList<>();
    command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    command.add("-jar");
    command.add(Path.of("target/cryoproxy.jar").toAbsolutePath().toString());
    command.addAll(List.of("run", "--config", config.toString()));
    return new ProcessBuilder(command)
        .redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(out.toFile()))
        .start();
  }

  static void awaitUp(int port) {
    await()
        .atMost(Duration.ofSeconds(30))
        .ignoreExceptions()
        .until(
            () -> {
              connect(port).close();
              return true;
            });
  }

  static void awaitProgress(AtomicInteger done, int at) {
    await()
        .atMost(Duration.ofSeconds(120))
        .pollInterval(Duration.ofMillis(10))
        .until(() -> done.get() >= at);
  }

  static String scrape(int adminPort) throws Exception {
    return new String(
        URI.create("http://127.0.0.1:" + adminPort + "/metrics")
            .toURL()
            .openStream()
            .readAllBytes(),
        StandardCharsets.UTF_8);
  }

  static int freePort() throws Exception {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }
}

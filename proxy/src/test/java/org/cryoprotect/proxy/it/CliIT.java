package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The shaded jar as the README runs it: {@code --version}, {@code check-config} (exit 2 naming the
 * bad key), {@code run} serving a query, the connection log line, and graceful SIGTERM.
 */
@PgTest
class CliIT {
  static final Path JAR = Path.of("target/cryoproxy.jar");

  @TempDir Path dir;

  record Result(int exit, String out, String err) {}

  private static ProcessBuilder java(String... args) {
    List<String> command = new ArrayList<>();
    command.add(Path.of(System.getProperty("java.home"), "bin", "java").toString());
    command.add("-jar");
    command.add(JAR.toAbsolutePath().toString());
    command.addAll(List.of(args));
    return new ProcessBuilder(command);
  }

  private Result run(String... args) throws Exception {
    Path out = dir.resolve("out.txt");
    Path err = dir.resolve("err.txt");
    Process p = java(args).redirectOutput(out.toFile()).redirectError(err.toFile()).start();
    assertThat(p.waitFor(60, TimeUnit.SECONDS)).isTrue();
    return new Result(p.exitValue(), Files.readString(out), Files.readString(err));
  }

  /**
   * Whether this process ignores SIGHUP (bit 0 of SigIgn in /proc/self/status): its children do.
   */
  private static boolean sighupIgnored() throws IOException {
    Path status = Path.of("/proc/self/status");
    if (!Files.exists(status)) {
      return false;
    }
    return Files.readAllLines(status).stream()
        .filter(l -> l.startsWith("SigIgn:"))
        .map(l -> Long.parseUnsignedLong(l.substring("SigIgn:".length()).trim(), 16))
        .anyMatch(mask -> (mask & 1L) != 0);
  }

  private static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0)) {
      return s.getLocalPort();
    }
  }

  @Test
  void versionNamesTheBuild() throws Exception {
    Result r = run("--version");
    assertThat(r.exit()).isZero();
    assertThat(r.out()).startsWith("cryoproxy ").doesNotContain("development build");
  }

  @Test
  void checkConfigNamesTheBadKeyAndExitsTwo() throws Exception {
    Path config = dir.resolve("bad.yaml");
    Files.writeString(
        config,
        "databases:\n  app:\n    primary: { host: 127.0.0.1, port: 5432 }\n    replica: []\n");
    Result r = run("check-config", "--config", config.toString());
    assertThat(r.exit()).isEqualTo(2);
    assertThat(r.err()).contains("databases.app.replica: unknown key");
  }

  @Test
  void checkConfigAcceptsTheDocumentedExample() throws Exception {
    Path config = dir.resolve("cryoproxy.yaml");
    Files.copy(Path.of("src/main/resources/cryoproxy.example.yaml"), config);
    Files.writeString(dir.resolve("userlist.txt"), "\"app\" \"secret\"\n");
    Result r = run("check-config", "--config", config.toString());
    assertThat(r.err()).isEmpty();
    assertThat(r.exit()).isZero();
    assertThat(r.out()).startsWith("configuration OK");
  }

  @Test
  void migrateAppliesTheMigrationsTheJarCarries(PgCluster pg) throws Exception {
    pg.createDatabase("cli_migrated");
    Path config = dir.resolve("migrate.yaml");
    Files.writeString(
        config,
        "migrate: { user: "
            + PgCluster.SUPERUSER
            + ", password: "
            + PgCluster.SUPERUSER_PASSWORD
            + " }\n"
            + RunningProxy.database("app", "cli_migrated", "127.0.0.1", pg.primary().port()));
    Result first = run("migrate", "--config", config.toString());
    assertThat(first.exit()).as(first.err()).isZero();
    assertThat(first.out())
        .contains(
            "applied 1 roles",
            "applied 3 audit",
            "applied 4 cache invalidation",
            "applied 5 cryoprotect",
            "applied 6 view refresh",
            "applied 7 rls indexes");
    Result again = run("migrate", "--config", config.toString());
    assertThat(again.exit()).as(again.err()).isZero();
    assertThat(again.out()).contains("up to date at version 7");
  }

  @Test
  void runServesQueriesAndShutsDownGracefullyOnSigterm(PgCluster pg) throws Exception {
    int port = freePort();
    Path config = dir.resolve("cryoproxy.yaml");
    Files.writeString(
        config,
        "listen: { host: 127.0.0.1, port: "
            + port
            + " }\n"
            + "admin: { host: 127.0.0.1, port: 0 }\n"
            + "limits: { shutdown_timeout: 20s }\n"
            + RunningProxy.database("app", "postgres", "127.0.0.1", pg.primary().port()));
    Path err = dir.resolve("run.err");
    Process proxy =
        java("run", "--config", config.toString())
            .redirectErrorStream(true)
            .redirectOutput(err.toFile())
            .start();
    String url = "jdbc:postgresql://127.0.0.1:" + port + "/app?user=postgres&password=not-logged";
    try {
      Connection session =
          await()
              .atMost(Duration.ofSeconds(30))
              .ignoreExceptions()
              .until(() -> DriverManager.getConnection(url), c -> c != null);
      try (session) {
        assertThat(answer(session, "SELECT 6 * 7")).isEqualTo(42);

        if (sighupIgnored()) {
          // Run under nohup (its children inherit the ignore): the proxy says it cannot reload.
          await()
              .atMost(Duration.ofSeconds(10))
              .until(() -> Files.readString(err).contains("SIGHUP cannot reload"));
        } else {
          // SIGHUP re-reads the file; the open session does not notice.
          Files.writeString(config, Files.readString(config) + "pool: { size: 7 }\n");
          new ProcessBuilder("kill", "-HUP", String.valueOf(proxy.pid())).start().waitFor();
          await()
              .atMost(Duration.ofSeconds(10))
              .until(() -> Files.readString(err).contains("configuration reloaded from"));
        }
        assertThat(answer(session, "SELECT 1 + 2")).isEqualTo(3);

        proxy.destroy(); // SIGTERM
        await()
            .atMost(Duration.ofSeconds(10))
            .until(() -> Files.readString(err).contains("shutting down"));
        // Stop accepting at once ...
        assertThatThrownBy(() -> DriverManager.getConnection(url).close())
            .isInstanceOf(SQLException.class);
        // ... while the session already open may finish its work.
        assertThat(answer(session, "SELECT 1 + 1")).isEqualTo(2);
        assertThat(proxy.isAlive()).isTrue();
      }
      // The last session gone, the process ends well before the 20 s timeout.
      assertThat(proxy.waitFor(10, TimeUnit.SECONDS)).isTrue();
    } catch (AssertionError | RuntimeException e) {
      System.out.println("[CliIT] the proxy's output:\n" + Files.readString(err));
      throw e;
    } finally {
      proxy.destroyForcibly();
    }
    String log = Files.readString(err, StandardCharsets.UTF_8);
    assertThat(log)
        .containsPattern("client 127\\.0\\.0\\.1:\\d+ db=app user=postgres tls=false logged in")
        .containsPattern("client 127\\.0\\.0\\.1:\\d+ db=app user=postgres .* closed after \\d+ ms")
        .contains("shut down")
        .doesNotContain("not-logged");
  }

  @Test
  void jsonLogLinesForLogPipelines(PgCluster pg) throws Exception {
    Path config = dir.resolve("json.yaml");
    Files.writeString(
        config,
        "listen: { host: 127.0.0.1, port: "
            + freePort()
            + " }\nadmin: { host: 127.0.0.1, port: 0 }\n"
            + RunningProxy.database("app", "postgres", "127.0.0.1", pg.primary().port()));
    Path log = dir.resolve("json.log");
    ProcessBuilder builder =
        java("run", "--config", config.toString())
            .redirectErrorStream(true)
            .redirectOutput(log.toFile());
    builder.environment().put("CRYOPROXY_LOG_FORMAT", "json");
    Process proxy = builder.start();
    try {
      await()
          .atMost(Duration.ofSeconds(30))
          .until(() -> Files.readString(log).contains("listening on"));
    } finally {
      proxy.destroy();
      proxy.waitFor(20, TimeUnit.SECONDS);
      proxy.destroyForcibly();
    }
    com.fasterxml.jackson.databind.ObjectMapper json =
        new com.fasterxml.jackson.databind.ObjectMapper();
    List<String> lines = Files.readAllLines(log).stream().filter(l -> !l.isBlank()).toList();
    assertThat(lines).isNotEmpty();
    for (String line : lines) {
      com.fasterxml.jackson.databind.JsonNode node = json.readTree(line);
      assertThat(node.has("level") && node.has("loggerName") && node.has("formattedMessage"))
          .as(line)
          .isTrue();
    }
    assertThat(lines).anyMatch(l -> l.contains("shut down"));
  }

  private static int answer(Connection c, String sql) throws SQLException {
    try (Statement s = c.createStatement();
        ResultSet rs = s.executeQuery(sql)) {
      rs.next();
      return rs.getInt(1);
    }
  }
}

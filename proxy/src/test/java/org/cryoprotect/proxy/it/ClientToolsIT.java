package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** libpq clients through the proxy: psql ({@code -c}, {@code \copy}) and pgbench's three modes. */
class ClientToolsIT {
  static PgCluster pg;
  static RunningProxy proxy;
  @TempDir static Path dir;

  @BeforeAll
  static void start() throws Exception {
    ClientTools.requireTool(
        Files.isExecutable(tool("psql")) && Files.isExecutable(tool("pgbench")),
        "psql and pgbench are needed (Debian postgresql-client)");
    pg = PgCluster.builder().start();
    pg.primary().sql("CREATE DATABASE bench");
    proxy =
        RunningProxy.start(
            RunningProxy.database("bench", "bench", "127.0.0.1", pg.primary().port()));
    Result init = run(tool("pgbench").toString(), "-i", "-s", "1", "-q");
    assertThat(init.exit).as(init.output).isZero();
  }

  @AfterAll
  static void stop() {
    if (proxy != null) {
      proxy.close();
    }
    if (pg != null) {
      pg.close();
    }
  }

  /** The client tools of PG_BIN when it has them, else the machine's (Debian puts them on PATH). */
  static Path tool(String name) {
    String bin = System.getProperty("cryoproxy.pg.bin", "");
    if (!bin.isBlank() && Files.isExecutable(Path.of(bin, name))) {
      return Path.of(bin, name);
    }
    for (String p : System.getenv("PATH").split(":")) {
      if (Files.isExecutable(Path.of(p, name))) {
        return Path.of(p, name);
      }
    }
    return Path.of("/usr/lib/postgresql/15/bin", name);
  }

  record Result(int exit, String output) {}

  static Result run(String... command) throws IOException, InterruptedException {
    return runOn(proxy, "bench", command);
  }

  /** pgbench against {@code database} through {@code proxy}. */
  static Result pgbench(RunningProxy proxy, String database, String... args)
      throws IOException, InterruptedException {
    List<String> command = new ArrayList<>(List.of(tool("pgbench").toString()));
    command.addAll(List.of(args));
    return runOn(proxy, database, command.toArray(String[]::new));
  }

  static Result runOn(RunningProxy proxy, String database, String... command)
      throws IOException, InterruptedException {
    List<String> args = new ArrayList<>(List.of(command));
    args.addAll(List.of("-h", "127.0.0.1", "-p", String.valueOf(proxy.port()), "-U", "postgres"));
    args.add(database);
    ProcessBuilder builder = new ProcessBuilder(args).redirectErrorStream(true);
    builder.environment().put("PGSSLMODE", "disable");
    builder.environment().put("PGCONNECT_TIMEOUT", "10");
    Process process = builder.start();
    String output = new String(process.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
    assertThat(process.waitFor(120, TimeUnit.SECONDS)).isTrue();
    return new Result(process.exitValue(), output);
  }

  @Test
  void psqlCommand() throws Exception {
    Result r =
        run(
            tool("psql").toString(),
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "SELECT count(*) FROM pgbench_branches",
            "-c",
            "SELECT current_setting('application_name')");
    assertThat(r.exit).as(r.output).isZero();
    assertThat(r.output).isEqualTo("1\npsql\n");
  }

  @Test
  void psqlCopyInAndOut() throws Exception {
    Path in = dir.resolve("in.csv");
    Path out = dir.resolve("out.csv");
    StringBuilder csv = new StringBuilder();
    for (int i = 0; i < 1000; i++) {
      csv.append(i).append(",text ").append(i).append('\n');
    }
    Files.writeString(in, csv);
    Result r =
        run(
            tool("psql").toString(),
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            "CREATE TABLE IF NOT EXISTS copied (n int, s text)",
            "-c",
            "\\copy copied FROM '" + in + "' WITH (FORMAT csv)",
            "-c",
            "\\copy (SELECT * FROM copied ORDER BY n) TO '" + out + "' WITH (FORMAT csv)");
    assertThat(r.exit).as(r.output).isZero();
    assertThat(r.output).contains("COPY 1000");
    assertThat(Files.readString(out)).isEqualTo(csv.toString());
  }

  @ParameterizedTest
  @ValueSource(strings = {"simple", "extended", "prepared"})
  void pgbenchRunsWithoutErrors(String mode) throws Exception {
    Result r = run(tool("pgbench").toString(), "-M", mode, "-c", "4", "-j", "2", "-T", "3", "-n");
    assertThat(r.exit).as(r.output).isZero();
    assertThat(r.output).contains("query mode: " + mode);
    assertThat(r.output).containsPattern("number of failed transactions: 0 \\(0\\.000%\\)");
    assertThat(r.output).containsPattern("number of transactions actually processed: [1-9]");
  }
}

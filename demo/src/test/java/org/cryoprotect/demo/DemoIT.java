package org.cryoprotect.demo;

import static org.assertj.core.api.Assertions.assertThat;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.cryoprotect.embedded.FreePorts;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Runs the demo jar as a user would ({@code java -jar cryoproxy-demo.jar demo}), connects with
 * pgJDBC using what it printed, and stops it with SIGINT (Ctrl-C): nothing may be left running.
 */
class DemoIT {
  private static final Pattern NODES =
      Pattern.compile("primary 127\\.0\\.0\\.1:(\\d+), replica 127\\.0\\.0\\.1:(\\d+)");

  @TempDir Path logs;

  @Test
  void thePrintedUrlAndTokenWorkAndCtrlCLeavesNothingBehind() throws Exception {
    int port = FreePorts.next();
    int adminPort = FreePorts.next();
    Path stderr = logs.resolve("demo.err");
    Process demo =
        new ProcessBuilder(
                Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-jar",
                System.getProperty("cryoproxy.demo.jar"),
                "demo",
                "--port",
                Integer.toString(port),
                "--admin-port",
                Integer.toString(adminPort),
                "--molecules",
                "2000")
            .redirectError(stderr.toFile())
            .start();
    try {
      List<String> banner = readBanner(demo, stderr);
      String url = value(banner, "JDBC URL: ");
      String token = value(banner, "Token ");
      token = token.substring(token.lastIndexOf(' ') + 1);
      Matcher nodes = NODES.matcher(String.join("\n", banner));
      assertThat(nodes.find()).as("node ports in %s", banner).isTrue();
      int primaryPort = Integer.parseInt(nodes.group(1));
      int replicaPort = Integer.parseInt(nodes.group(2));
      String[] files = value(banner, "Files: ").split(" and ");

      assertThat(url)
          .isEqualTo("jdbc:postgresql://127.0.0.1:" + port + "/cryoprotect?user=authenticator");
      Properties props = new Properties();
      props.setProperty("password", token);
      try (Connection c = DriverManager.getConnection(url, props);
          Statement s = c.createStatement()) {
        assertThat(single(s, "SELECT count(*) FROM molecules")).isEqualTo("2000");
        assertThat(single(s, "SELECT name FROM molecules ORDER BY name LIMIT 1")).isNotBlank();
        assertThat(Long.parseLong(single(s, "SELECT count(*) FROM toxicity_summary"))).isPositive();
        // Reads are routed: once the function's volatility is known, they run on the replica.
        boolean replicaAnswered = false;
        for (int i = 0; i < 20 && !replicaAnswered; i++) {
          replicaAnswered =
              single(s, "SELECT inet_server_port()").equals(Integer.toString(replicaPort));
          Thread.sleep(100);
        }
        assertThat(replicaAnswered).as("a read reached the replica").isTrue();
        assertThat(single(s, "SELECT current_user")).isEqualTo("service_read");
      }
      HttpResponse<String> metrics =
          HttpClient.newHttpClient()
              .send(
                  HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + adminPort + "/metrics"))
                      .build(),
                  HttpResponse.BodyHandlers.ofString());
      assertThat(metrics.statusCode()).isEqualTo(200);
      assertThat(metrics.body()).contains("cryoproxy_cache_");

      // Ctrl-C.
      new ProcessBuilder("kill", "-INT", Long.toString(demo.pid())).start().waitFor();
      assertThat(demo.waitFor(60, TimeUnit.SECONDS)).as("the demo ended after SIGINT").isTrue();
      for (int p : new int[] {port, adminPort, primaryPort, replicaPort}) {
        assertThat(listening(p)).as("port %d still open", p).isFalse();
      }
      for (String dir : files) {
        assertThat(Files.exists(Path.of(dir.strip()))).as("%s left behind", dir).isFalse();
      }
      assertThat(processesMentioning(files[1].strip())).isEmpty();
    } finally {
      demo.destroyForcibly();
    }
  }

  /** Stdout up to the Ctrl-C line; the demo's log is shown if it ends or takes too long. */
  private static List<String> readBanner(Process demo, Path stderr) throws Exception {
    List<String> lines = new ArrayList<>();
    Thread reader =
        new Thread(
            () -> {
              try (BufferedReader in =
                  new BufferedReader(
                      new InputStreamReader(demo.getInputStream(), StandardCharsets.UTF_8))) {
                for (String line; (line = in.readLine()) != null; ) {
                  synchronized (lines) {
                    lines.add(line);
                    lines.notifyAll();
                  }
                }
              } catch (IOException ignored) {
                // The process ended.
              }
            });
    reader.setDaemon(true);
    reader.start();
    long deadline = System.nanoTime() + TimeUnit.MINUTES.toNanos(3);
    synchronized (lines) {
      while (lines.stream().noneMatch(l -> l.startsWith("Ctrl-C"))) {
        long left = deadline - System.nanoTime();
        if (left <= 0 || !demo.isAlive()) {
          throw new AssertionError(
              "the demo did not start; stdout " + lines + "\nstderr:\n" + Files.readString(stderr));
        }
        lines.wait(Math.min(TimeUnit.NANOSECONDS.toMillis(left) + 1, 500));
      }
      return List.copyOf(lines);
    }
  }

  private static String value(List<String> banner, String prefix) {
    return banner.stream()
        .filter(l -> l.startsWith(prefix))
        .map(l -> l.substring(prefix.length()))
        .findFirst()
        .orElseThrow(() -> new AssertionError("no '" + prefix + "' line in " + banner));
  }

  private static String single(Statement s, String sql) throws Exception {
    try (ResultSet rs = s.executeQuery(sql)) {
      assertThat(rs.next()).isTrue();
      return rs.getString(1);
    }
  }

  private static boolean listening(int port) {
    try (Socket socket = new Socket()) {
      socket.connect(new InetSocketAddress("127.0.0.1", port), 500);
      return true;
    } catch (IOException e) {
      return false;
    }
  }

  private static List<String> processesMentioning(String text) throws IOException {
    List<String> found = new ArrayList<>();
    try (Stream<Path> procs = Files.list(Path.of("/proc"))) {
      for (Path proc : procs.filter(p -> p.getFileName().toString().matches("\\d+")).toList()) {
        try {
          String cmdline = Files.readString(proc.resolve("cmdline")).replace('\0', ' ');
          if (cmdline.contains(text)) {
            found.add(proc.getFileName() + ": " + cmdline);
          }
        } catch (IOException ignored) {
          // The process ended while we looked.
        }
      }
    }
    return found;
  }
}

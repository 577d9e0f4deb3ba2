package org.cryoprotect.proxy.testing;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.Comparator;
import java.util.List;
import java.util.Optional;
import java.util.stream.Stream;
import org.cryoprotect.embedded.FreePorts;

/**
 * A real Prometheus (Debian's {@code prometheus} package) in a temporary directory, listening on a
 * free loopback port, scraping the given targets as one job. Queries go through its HTTP API.
 *
 * <pre>{@code
 * assumeTrue(PrometheusServer.binary().isPresent(), "prometheus not installed");
 * try (PrometheusServer prometheus =
 *     PrometheusServer.start("cryoproxy", List.of("127.0.0.1:" + adminPort), Duration.ofSeconds(1),
 *         DashboardQueries.ruleFiles())) {
 *   prometheus.awaitUp(Duration.ofSeconds(30));
 *   JsonNode result = prometheus.query("sum(cryoproxy_client_logins_total)").path("result");
 * }
 * }</pre>
 */
public final class PrometheusServer implements AutoCloseable {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  private final Process process;
  private final Path dir;
  private final URI uri;
  private final String job;

  private PrometheusServer(Process process, Path dir, URI uri, String job) {
    this.process = process;
    this.dir = dir;
    this.uri = uri;
    this.job = job;
  }

  /** The prometheus binary: on PATH, or Debian's {@code /usr/bin/prometheus}. */
  public static Optional<Path> binary() {
    return Commands.find("prometheus")
        .or(() -> Optional.of(Path.of("/usr/bin/prometheus")).filter(Files::isExecutable));
  }

  /**
   * Starts Prometheus scraping {@code targets} ({@code host:port}, path {@code /metrics}) as job
   * {@code job} every {@code interval}, evaluating {@code ruleFiles} at the same interval, and
   * waits until it is ready.
   */
  public static PrometheusServer start(
      String job, List<String> targets, Duration interval, List<Path> ruleFiles)
      throws IOException, InterruptedException {
    Path binary = binary().orElseThrow(() -> new IllegalStateException("prometheus not found"));
    Path dir = Files.createTempDirectory("cryoproxy-prometheus");
    StringBuilder config = new StringBuilder();
    String seconds = interval.toMillis() + "ms";
    config.append("global:\n  scrape_interval: ").append(seconds).append('\n');
    config.append("  evaluation_interval: ").append(seconds).append('\n');
    if (!ruleFiles.isEmpty()) {
      config.append("rule_files:\n");
      for (Path rules : ruleFiles) {
        Path copy = dir.resolve(rules.getFileName());
        Files.copy(rules, copy);
        config.append("  - ").append(copy.getFileName()).append('\n');
      }
    }
    config.append("scrape_configs:\n  - job_name: ").append(job).append('\n');
    config.append("    static_configs:\n      - targets:\n");
    for (String target : targets) {
      config.append("          - '").append(target).append("'\n");
    }
    Files.writeString(dir.resolve("prometheus.yml"), config);

    // The port is free when probed but may be taken before Prometheus binds it: try again.
    for (int attempt = 1; ; attempt++) {
      int port = FreePorts.next();
      Path log = dir.resolve("prometheus.log");
      Process process =
          new ProcessBuilder(
                  binary.toString(),
                  "--config.file=" + dir.resolve("prometheus.yml"),
                  "--storage.tsdb.path=" + dir.resolve("data"),
                  "--web.listen-address=127.0.0.1:" + port,
                  "--log.level=warn")
              .directory(dir.toFile())
              .redirectErrorStream(true)
              .redirectOutput(log.toFile())
              .redirectInput(ProcessBuilder.Redirect.from(Path.of("/dev/null").toFile()))
              .start();
      PrometheusServer server =
          new PrometheusServer(process, dir, URI.create("http://127.0.0.1:" + port), job);
      if (server.awaitReady(Duration.ofSeconds(60))) {
        return server;
      }
      String output = Files.readString(log);
      server.stop();
      if (attempt == 3 || !output.contains("address already in use")) {
        server.deleteDir();
        throw new IllegalStateException("prometheus did not become ready:\n" + output);
      }
    }
  }

  private boolean awaitReady(Duration timeout) throws InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    while (System.nanoTime() < deadline && process.isAlive()) {
      try {
        if (get("/-/ready").statusCode() == 200) {
          return true;
        }
      } catch (IOException notYet) {
        // not listening yet
      }
      Thread.sleep(100);
    }
    return false;
  }

  public URI uri() {
    return uri;
  }

  /** The temporary directory: config, rule files, TSDB and {@code prometheus.log}. */
  public Path dir() {
    return dir;
  }

  /** Waits until every target of the job has been scraped successfully at least once. */
  public void awaitUp(Duration timeout) throws IOException, InterruptedException {
    long deadline = System.nanoTime() + timeout.toNanos();
    String last = "";
    while (System.nanoTime() < deadline) {
      JsonNode active = api("/api/v1/targets?state=active").path("activeTargets");
      boolean allUp = active.size() > 0;
      for (JsonNode target : active) {
        allUp &= target.path("health").asText().equals("up");
        last = target.path("scrapeUrl").asText() + " " + target.path("lastError").asText();
      }
      if (allUp) {
        return;
      }
      Thread.sleep(200);
    }
    throw new IllegalStateException("targets of job " + job + " not up: " + last);
  }

  /**
   * An instant query at the current time; returns the API's {@code data} ({@code resultType},
   * {@code result}). A query Prometheus rejects throws {@link IllegalArgumentException} with its
   * error message.
   */
  public JsonNode query(String promql) throws IOException, InterruptedException {
    return api("/api/v1/query?query=" + encode(promql));
  }

  public JsonNode query(String promql, Instant time) throws IOException, InterruptedException {
    return api("/api/v1/query?query=" + encode(promql) + "&time=" + time.toEpochMilli() / 1000.0);
  }

  public JsonNode queryRange(String promql, Instant start, Instant end, Duration step)
      throws IOException, InterruptedException {
    return api(
        "/api/v1/query_range?query="
            + encode(promql)
            + "&start="
            + start.toEpochMilli() / 1000.0
            + "&end="
            + end.toEpochMilli() / 1000.0
            + "&step="
            + step.toMillis() / 1000.0);
  }

  /** The loaded rule groups with each rule's health and last error ({@code /api/v1/rules}). */
  public JsonNode rules() throws IOException, InterruptedException {
    return api("/api/v1/rules");
  }

  private JsonNode api(String pathAndQuery) throws IOException, InterruptedException {
    HttpResponse<String> response = get(pathAndQuery);
    JsonNode body;
    try {
      body = JSON.readTree(response.body());
    } catch (IOException e) {
      throw new IOException(
          "not JSON from " + pathAndQuery + " (" + response.statusCode() + "): " + response.body());
    }
    if (!body.path("status").asText().equals("success")) {
      throw new IllegalArgumentException(
          body.path("errorType").asText() + ": " + body.path("error").asText());
    }
    return body.path("data");
  }

  private HttpResponse<String> get(String pathAndQuery) throws IOException, InterruptedException {
    return HTTP.send(
        HttpRequest.newBuilder(uri.resolve(pathAndQuery)).timeout(Duration.ofSeconds(30)).build(),
        HttpResponse.BodyHandlers.ofString());
  }

  private static String encode(String s) {
    return URLEncoder.encode(s, StandardCharsets.UTF_8);
  }

  private void stop() throws InterruptedException {
    process.destroy();
    if (!process.waitFor(10, java.util.concurrent.TimeUnit.SECONDS)) {
      process.destroyForcibly().waitFor();
    }
  }

  private void deleteDir() {
    try (Stream<Path> files = Files.walk(dir)) {
      files.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    } catch (IOException ignored) {
      // a temp dir left behind is harmless
    }
  }

  @Override
  public void close() {
    try {
      stop();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
    deleteDir();
  }
}

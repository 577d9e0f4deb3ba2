package org.cryoprotect.proxy.admin;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.net.ConnectException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.atomic.AtomicReference;
import org.cryoprotect.proxy.admin.Readiness.NodeStatus;
import org.cryoprotect.proxy.admin.Readiness.Status;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.metrics.PrometheusMetrics;
import org.cryoprotect.proxy.testing.Exposition;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

class AdminHttpServerTest {
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  private final PrometheusMetrics metrics = new PrometheusMetrics("1.0");
  private final AtomicReference<Status> status = new AtomicReference<>(new Status(true, List.of()));
  private final AtomicReference<String> readinessThread = new AtomicReference<>();
  private final AdminHttpServer admin = start();

  private AdminHttpServer start() {
    try {
      return AdminHttpServer.start(
          new Endpoint("127.0.0.1", 0),
          metrics.registry(),
          () -> {
            readinessThread.set(Thread.currentThread().getName());
            Status s = status.get();
            if (s == null) {
              throw new IllegalStateException("probe state unavailable");
            }
            return s;
          });
    } catch (IOException e) {
      throw new IllegalStateException(e);
    }
  }

  @AfterEach
  void stop() {
    admin.close();
  }

  private HttpResponse<String> get(String path, String... headers) throws Exception {
    HttpRequest.Builder request = HttpRequest.newBuilder(uri(path)).timeout(Duration.ofSeconds(10));
    if (headers.length > 0) {
      request.headers(headers);
    }
    return HTTP.send(request.build(), HttpResponse.BodyHandlers.ofString());
  }

  private URI uri(String path) {
    InetSocketAddress a = admin.address();
    return URI.create("http://127.0.0.1:" + a.getPort() + path);
  }

  @Test
  void portZeroBindsAFreePort() {
    assertThat(admin.address().getPort()).isPositive();
    assertThat(admin.address().getAddress().isLoopbackAddress()).isTrue();
  }

  @Test
  void metricsAreServedAsPrometheusTextByDefault() throws Exception {
    metrics.clientLogin("app", "alice");
    HttpResponse<String> r = get("/metrics");
    assertThat(r.statusCode()).isEqualTo(200);
    assertThat(r.headers().firstValue("Content-Type"))
        .hasValueSatisfying(ct -> assertThat(ct).startsWith("text/plain"));
    Exposition e = Exposition.parse(r.body());
    assertThat(e.value("cryoproxy_client_logins_total", "database", "app")).isEqualTo(1);
    assertThat(e.value("cryoproxy_build_info", "version", "1.0")).isEqualTo(1);
  }

  @Test
  void metricsAreServedAsOpenMetricsWhenAsked() throws Exception {
    HttpResponse<String> r =
        get("/metrics", "Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assertThat(r.statusCode()).isEqualTo(200);
    assertThat(r.headers().firstValue("Content-Type"))
        .hasValueSatisfying(ct -> assertThat(ct).startsWith("application/openmetrics-text"));
    assertThat(r.body()).endsWith("# EOF\n");
    Exposition.parse(r.body());
  }

  @Test
  void liveIsAlways200() throws Exception {
    HttpResponse<String> r = get("/health/live");
    assertThat(r.statusCode()).isEqualTo(200);
    assertThat(r.body()).isEqualTo("live\n");
  }

  @Test
  void readyReportsTheReadinessStatusWithNodeDetailOnAnAdminThread() throws Exception {
    status.set(
        new Status(true, List.of(new NodeStatus("app", "127.0.0.1:5432", "primary", true, ""))));
    HttpResponse<String> r = get("/health/ready");
    assertThat(r.statusCode()).isEqualTo(200);
    assertThat(r.headers().firstValue("Content-Type")).contains("application/json");
    JsonNode body = new ObjectMapper().readTree(r.body());
    assertThat(body.path("status").asText()).isEqualTo("ready");
    assertThat(body.path("nodes").get(0).path("database").asText()).isEqualTo("app");
    assertThat(body.path("nodes").get(0).path("node").asText()).isEqualTo("127.0.0.1:5432");
    assertThat(body.path("nodes").get(0).path("role").asText()).isEqualTo("primary");
    assertThat(body.path("nodes").get(0).path("up").asBoolean()).isTrue();
    assertThat(readinessThread.get()).startsWith("cryoproxy-admin");

    status.set(
        new Status(
            false,
            List.of(
                new NodeStatus("app", "127.0.0.1:5432", "primary", false, "connection refused"))));
    r = get("/health/ready");
    assertThat(r.statusCode()).isEqualTo(503);
    body = new ObjectMapper().readTree(r.body());
    assertThat(body.path("status").asText()).isEqualTo("not ready");
    assertThat(body.path("nodes").get(0).path("detail").asText()).isEqualTo("connection refused");
  }

  @Test
  void aFailingReadinessCheckIsNotReady() throws Exception {
    status.set(null);
    HttpResponse<String> r = get("/health/ready");
    assertThat(r.statusCode()).isEqualTo(503);
    assertThat(r.body()).contains("probe state unavailable");
  }

  @Test
  void shuttingDownIsNotReadyButStillLive() throws Exception {
    admin.shuttingDown();
    HttpResponse<String> r = get("/health/ready");
    assertThat(r.statusCode()).isEqualTo(503);
    assertThat(r.body()).contains("shutting down");
    assertThat(get("/health/live").statusCode()).isEqualTo(200);
    assertThat(get("/metrics").statusCode()).isEqualTo(200);
  }

  @Test
  void otherPathsAndMethodsAreRefused() throws Exception {
    assertThat(get("/").statusCode()).isEqualTo(404);
    assertThat(get("/metricsx").statusCode()).isEqualTo(404);
    assertThat(get("/health/ready/x").statusCode()).isEqualTo(404);
    HttpResponse<String> post =
        HTTP.send(
            HttpRequest.newBuilder(uri("/metrics"))
                .POST(HttpRequest.BodyPublishers.ofString("x"))
                .build(),
            HttpResponse.BodyHandlers.ofString());
    assertThat(post.statusCode()).isEqualTo(405);
  }

  @Test
  void closeReleasesThePort() {
    URI live = uri("/health/live");
    admin.close();
    assertThatThrownBy(
            () ->
                HTTP.send(
                    HttpRequest.newBuilder(live).build(), HttpResponse.BodyHandlers.ofString()))
        .isInstanceOf(ConnectException.class);
  }
}

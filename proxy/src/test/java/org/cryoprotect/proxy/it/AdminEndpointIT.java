package org.cryoprotect.proxy.it;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.awaitility.Awaitility.await;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.sql.Connection;
import java.sql.ResultSet;
import java.time.Duration;
import org.cryoprotect.embedded.PgCluster;
import org.cryoprotect.proxy.testing.Exposition;
import org.cryoprotect.proxy.testing.PgTest;
import org.cryoprotect.proxy.testing.RunningProxy;
import org.junit.jupiter.api.Test;

/** The admin HTTP endpoint of a running proxy, next to real client traffic. */
@PgTest
class AdminEndpointIT {
  private static final HttpClient HTTP =
      HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();

  private static HttpResponse<String> get(URI uri, String... headers) throws Exception {
    HttpRequest.Builder request = HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(10));
    if (headers.length > 0) {
      request.headers(headers);
    }
    return HTTP.send(request.build(), HttpResponse.BodyHandlers.ofString());
  }

  @Test
  void servesMetricsAndHealthBesideTheProxy(PgCluster pg) throws Exception {
    try (RunningProxy proxy =
        RunningProxy.start(
            RunningProxy.database("app", "postgres", "127.0.0.1", pg.primary().port()))) {
      assertThat(proxy.server().adminAddress().getPort()).isPositive().isNotEqualTo(proxy.port());
      try (Connection c = proxy.connect("app", "postgres", null);
          ResultSet rs = c.createStatement().executeQuery("SELECT 1")) {
        assertThat(rs.next()).isTrue();
      }

      HttpResponse<String> live = get(proxy.adminUri("/health/live"));
      assertThat(live.statusCode()).isEqualTo(200);
      assertThat(live.body()).isEqualTo("live\n");

      // Ready once the health probes have seen the primary (HealthIT covers the details).
      await()
          .atMost(Duration.ofSeconds(15))
          .untilAsserted(
              () -> assertThat(get(proxy.adminUri("/health/ready")).statusCode()).isEqualTo(200));
      HttpResponse<String> ready = get(proxy.adminUri("/health/ready"));
      assertThat(ready.statusCode()).isEqualTo(200);
      JsonNode body = new ObjectMapper().readTree(ready.body());
      assertThat(body.path("status").asText()).isEqualTo("ready");
      assertThat(body.path("nodes").isArray()).isTrue();

      HttpResponse<String> text = get(proxy.adminUri("/metrics"));
      assertThat(text.statusCode()).isEqualTo(200);
      Exposition metrics = Exposition.parse(text.body());
      assertThat(metrics.sampleNames())
          .contains("cryoproxy_build_info", "jvm_memory_used_bytes", "process_cpu_seconds_total");

      HttpResponse<String> openMetrics =
          get(proxy.adminUri("/metrics"), "Accept", "application/openmetrics-text; version=1.0.0");
      assertThat(openMetrics.headers().firstValue("Content-Type").orElseThrow())
          .startsWith("application/openmetrics-text");
      assertThat(openMetrics.body()).endsWith("# EOF\n");
      Exposition.parse(openMetrics.body());

      URI afterClose = proxy.adminUri("/health/live");
      proxy.close();
      assertThatThrownBy(() -> get(afterClose)).isInstanceOf(ConnectException.class);
    }
  }

  @Test
  void anExplicitAdminSectionIsHonoured(PgCluster pg) throws Exception {
    try (RunningProxy proxy =
        RunningProxy.start(
            "admin: { host: 127.0.0.1, port: 0 }\n"
                + RunningProxy.database("app", "postgres", "127.0.0.1", pg.primary().port()))) {
      assertThat(proxy.server().adminAddress().getAddress().isLoopbackAddress()).isTrue();
      assertThat(get(proxy.adminUri("/health/live")).statusCode()).isEqualTo(200);
    }
  }
}

package org.cryoprotect.proxy.metrics;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.cryoprotect.proxy.admin.AdminHttpServer;
import org.cryoprotect.proxy.admin.Readiness;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.DashboardQueries;
import org.cryoprotect.proxy.testing.DashboardQueries.Kind;
import org.cryoprotect.proxy.testing.DashboardQueries.Query;
import org.cryoprotect.proxy.testing.PrometheusServer;
import org.junit.jupiter.api.Test;

/**
 * A real Prometheus scrapes the admin endpoint and runs every dashboard and alert query. The
 * metrics come from events fed in directly, one of each, not from a proxy workload: this proves the
 * exposition, the scrape config shape, the rule files and the queries fit together.
 */
class PrometheusScrapeIT {

  @Test
  void prometheusScrapesTheEndpointAndRunsEveryQuery() throws Exception {
    ClientTools.requireTool(PrometheusServer.binary().isPresent(), "prometheus not installed");
    PrometheusMetrics metrics = DashboardsTest.exercisedMetrics();
    try (AdminHttpServer admin =
            AdminHttpServer.start(
                new Endpoint("127.0.0.1", 0),
                metrics.registry(),
                () -> new Readiness.Status(true, java.util.List.of()));
        PrometheusServer prometheus =
            PrometheusServer.start(
                "cryoproxy",
                List.of("127.0.0.1:" + admin.address().getPort()),
                Duration.ofSeconds(1),
                DashboardQueries.ruleFiles())) {
      prometheus.awaitUp(Duration.ofSeconds(30));
      // rate() needs two samples inside its window, histogram_quantile a rate.
      Thread.sleep(3_000);

      assertThat(
              prometheus
                  .query("up{job=\"cryoproxy\"}")
                  .path("result")
                  .get(0)
                  .path("value")
                  .get(1)
                  .asText())
          .isEqualTo("1");
      assertThat(
              prometheus
                  .query("cryoproxy_client_logins_total{database=\"app\"}")
                  .path("result")
                  .get(0)
                  .path("value")
                  .get(1)
                  .asText())
          .isEqualTo("1");

      Map<String, String> failures = new LinkedHashMap<>();
      List<String> empty = new ArrayList<>();
      for (Query q : DashboardQueries.all()) {
        try {
          JsonNode data = prometheus.query(q.promql());
          // Alert expressions are empty unless firing; dashboard queries must show something.
          if (q.kind() != Kind.ALERT && data.path("result").isEmpty()) {
            empty.add(q.toString());
          }
        } catch (IllegalArgumentException e) {
          failures.put(q.toString(), e.getMessage());
        }
      }
      assertThat(failures).as("queries Prometheus rejects").isEmpty();
      assertThat(empty).as("dashboard queries without data").isEmpty();

      JsonNode groups = prometheus.rules().path("groups");
      assertThat(groups.findValuesAsText("name")).contains("cryoproxy");
      assertThat(groups.findValues("health"))
          .allSatisfy(h -> assertThat(h.asText()).isEqualTo("ok"));
      assertThat(groups.findValues("rules").get(0).size())
          .isEqualTo(DashboardQueries.alerts().size());
    }
  }
}

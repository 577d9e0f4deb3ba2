package org.cryoprotect.proxy.metrics;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.Commands;
import org.cryoprotect.proxy.testing.DashboardQueries;
import org.cryoprotect.proxy.testing.DashboardQueries.Query;
import org.cryoprotect.proxy.testing.Exposition;
import org.junit.jupiter.api.Test;

/**
 * The files under {@code dashboards/}: Grafana dashboards, provisioning, Prometheus config and
 * alert rules. Checked against what {@link PrometheusMetrics} exports, with promtool (Debian's
 * {@code prometheus} package) and with Grafana's published TypeScript schema (npm).
 */
class DashboardsTest {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final ObjectMapper YAML = new ObjectMapper(new YAMLFactory());

  /** Every event and every gauge supplier once, so that every metric family has a sample. */
  static PrometheusMetrics exercisedMetrics() {
    PrometheusMetrics m = new PrometheusMetrics("test");
    m.clientLogin("app", "alice");
    m.clientClosed("app", "alice");
    m.clientLoginFailed("password");
    m.tokenAccepted(false);
    m.tokenAccepted(true);
    m.tokenRejected("expired");
    m.registerRevocations(() -> 2, () -> 4.5);
    // 10 journaled, 7 of them written, 3 pending; 1 dropped by a full journal (never journaled).
    m.registerAudit(new AuditFigures(() -> 10, () -> 7, () -> 1, () -> 3, () -> 900, () -> 2.5));
    m.cacheHit();
    m.cacheMiss();
    m.cacheBypass("listener_down");
    m.cacheEviction("size");
    m.cacheInvalidation("notify");
    m.cacheNotifyLag(2_000_000);
    m.registerCache(() -> 5, () -> 4096);
    m.registerViews(() -> List.of(new ViewStats("public.toxicity_summary", 12, 300)));
    m.viewRefresh("public.toxicity_summary", "refreshed", 40_000_000);
    m.checkout("app", "127.0.0.1:5432", 1_000_000);
    m.transaction("app", ProxyMetrics.PRIMARY, 2_000_000);
    m.query("app", ProxyMetrics.PRIMARY, 1_000_000);
    m.query("app", ProxyMetrics.REPLICA, 1_000_000);
    m.bytes(ProxyMetrics.IN, 100);
    m.bytes(ProxyMetrics.OUT, 1000);
    m.error("42P01", ProxyMetrics.SERVER);
    m.pin("set");
    m.serverPrepare();
    m.preparedEviction();
    m.breakerTransition("127.0.0.1:5433", "closed", "open");
    m.retry("127.0.0.1:5433");
    m.replay("connection_lost");
    m.probe("127.0.0.1:5433", false);
    m.registerPreparedStatements(() -> 3);
    m.registerPools(
        () ->
            List.of(
                new PoolStats(
                    "app", "alice", "127.0.0.1:5432", 1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 5, 0)));
    m.registerNodes(
        () ->
            List.of(
                new NodeStats("127.0.0.1:5432", "primary", NodeStats.CLOSED, 0, 0, true),
                new NodeStats("127.0.0.1:5433", "replica", NodeStats.OPEN, 1.5, 1024, false)));
    return m;
  }

  private static Path dir() {
    return DashboardQueries.dashboardsDir();
  }

  @Test
  void threeDashboardsWithQueriesOnEveryPanel() throws Exception {
    Map<String, JsonNode> byUid = new TreeMap<>();
    for (Path file : DashboardQueries.dashboardFiles()) {
      JsonNode d = JSON.readTree(file.toFile());
      assertThat(byUid.put(d.path("uid").asText(), d)).as("uid of %s is unique", file).isNull();
      assertThat(d.path("title").asText()).startsWith("CryoProxy / ");
      Set<Integer> ids = new HashSet<>();
      List<JsonNode> panels = new ArrayList<>();
      d.path("panels").forEach(panels::add);
      d.path("panels").forEach(p -> p.path("panels").forEach(panels::add));
      for (JsonNode panel : panels) {
        String where = file.getFileName() + " \"" + panel.path("title").asText() + "\"";
        assertThat(ids.add(panel.path("id").asInt())).as("%s id is unique", where).isTrue();
        assertThat(panel.has("gridPos")).as(where).isTrue();
        if (!panel.path("type").asText().equals("row")) {
          assertThat(panel.path("targets").size()).as("%s has queries", where).isPositive();
          assertThat(panel.path("datasource").path("uid").asText())
              .as("%s uses the datasource variable", where)
              .isEqualTo("${datasource}");
        }
      }
    }
    assertThat(byUid.keySet())
        .containsExactly("cryoproxy-nodes", "cryoproxy-overview", "cryoproxy-pools");
    assertThat(byUid.get("cryoproxy-nodes").path("panels").findValuesAsText("title"))
        .contains("Proxy JVM");
  }

  @Test
  void everyQueryUsesOnlyMetricsTheProxyExports() throws Exception {
    Set<String> exported = exportedSampleNames();
    exported.add("up"); // added by Prometheus to every scrape; CryoProxyDown needs it
    Map<String, Set<String>> unknown = new TreeMap<>();
    for (Query q : DashboardQueries.all()) {
      Set<String> names = DashboardQueries.metricNames(q.promql());
      assertThat(names).as("%s selects a metric", q).isNotEmpty();
      names.removeAll(exported);
      if (!names.isEmpty()) {
        unknown.put(q.toString(), names);
      }
    }
    assertThat(unknown).as("queries using metrics the proxy does not export").isEmpty();
  }

  @Test
  void everyProxyMetricIsOnADashboardOrInAnAlert() throws Exception {
    Set<String> used = new TreeSet<>();
    DashboardQueries.all().forEach(q -> used.addAll(DashboardQueries.metricNames(q.promql())));
    Set<String> families = new TreeSet<>();
    for (String name : exportedSampleNames()) {
      if (name.startsWith("cryoproxy_")) {
        families.add(name.replaceAll("_(bucket|count|sum)$", ""));
      }
    }
    for (String family : families) {
      assertThat(used.stream().anyMatch(u -> u.equals(family) || u.startsWith(family + "_")))
          .as("%s is shown or alerted on somewhere", family)
          .isTrue();
    }
  }

  private static Set<String> exportedSampleNames() throws Exception {
    String text = PrometheusMetricsTest.text(exercisedMetrics(), false);
    return new TreeSet<>(Exposition.parse(text).sampleNames());
  }

  @Test
  void metricNamesAreFoundInPromql() {
    assertThat(
            DashboardQueries.metricNames(
                "histogram_quantile(0.95, sum by (le, database) (rate(cryoproxy_query_seconds_bucket"
                    + "{instance=~\"x\", route=\"a b\"}[5m] offset 1m))) > 1"))
        .containsExactly("cryoproxy_query_seconds_bucket");
    assertThat(
            DashboardQueries.metricNames(
                "sum(rate(a_total[1m])) / on (instance) group_left(version) b_info or vector(0)"))
        .containsExactly("a_total", "b_info");
    assertThat(
            new Query(
                    DashboardQueries.Kind.VARIABLE,
                    "v",
                    "label_values(cryoproxy_client_logins_total{instance=~\"$instance\"}, database)")
                .promql())
        .isEqualTo("cryoproxy_client_logins_total{instance=~\".*\"}");
    assertThat(
            new Query(
                    DashboardQueries.Kind.PANEL,
                    "p",
                    "rate(x{d=~\"${database}\"}[$__rate_interval])")
                .promql())
        .isEqualTo("rate(x{d=~\".*\"}[1m])");
  }

  @Test
  void provisioningPointsGrafanaAtPrometheusAndTheDashboardFiles() throws Exception {
    JsonNode datasources =
        YAML.readTree(dir().resolve("provisioning/datasources/cryoproxy.yml").toFile());
    assertThat(datasources.path("apiVersion").asInt()).isEqualTo(1);
    assertThat(datasources.path("datasources").get(0).path("type").asText())
        .isEqualTo("prometheus");
    JsonNode providers =
        YAML.readTree(dir().resolve("provisioning/dashboards/cryoproxy.yml").toFile());
    assertThat(providers.path("apiVersion").asInt()).isEqualTo(1);
    assertThat(providers.path("providers").get(0).path("type").asText()).isEqualTo("file");
    assertThat(providers.path("providers").get(0).path("options").path("path").asText())
        .isNotBlank();
  }

  private static Path promtool() {
    var promtool = Commands.find("promtool");
    ClientTools.requireTool(
        promtool.isPresent(), "promtool not on PATH (Debian package prometheus)");
    return promtool.get();
  }

  private static void promtool(Path dir, String... args) throws Exception {
    List<String> command = new ArrayList<>(List.of(promtool().toString()));
    command.addAll(List.of(args));
    Commands.Result r = Commands.run(dir, Duration.ofSeconds(60), null, command);
    assertThat(r.exit()).as("promtool %s:\n%s", String.join(" ", args), r.output()).isZero();
  }

  @Test
  void promtoolChecksTheScrapeConfig() throws Exception {
    promtool(dir().resolve("prometheus"), "check", "config", "prometheus.yml");
  }

  @Test
  void promtoolChecksTheAlertRules() throws Exception {
    List<String> args = new ArrayList<>(List.of("check", "rules"));
    DashboardQueries.ruleFiles().forEach(f -> args.add(f.toString()));
    promtool(dir().resolve("prometheus"), args.toArray(String[]::new));
  }

  @Test
  void alertRulesPassTheirUnitTests() throws Exception {
    promtool(dir().resolve("prometheus"), "test", "rules", "alerts.test.yml");
  }

  /** promtool parses each dashboard query as the expression of a recording rule. */
  @Test
  void everyDashboardQueryIsValidPromql() throws Exception {
    Path promtool = promtool();
    StringBuilder rules = new StringBuilder("groups:\n  - name: dashboards\n    rules:\n");
    List<Query> queries = DashboardQueries.dashboards();
    for (int i = 0; i < queries.size(); i++) {
      rules.append("      - record: dashboard:query").append(i).append('\n');
      rules.append("        expr: ").append(JSON.writeValueAsString(queries.get(i).promql()));
      rules.append('\n');
    }
    Path file = Files.createTempFile("cryoproxy-dashboard-queries", ".yml");
    try {
      Files.writeString(file, rules);
      Commands.Result r =
          Commands.run(
              file.getParent(),
              Duration.ofSeconds(60),
              null,
              List.of(promtool.toString(), "check", "rules", file.toString()));
      assertThat(r.exit()).as("%s\n%s", r.output(), queries).isZero();
      assertThat(r.output()).contains(queries.size() + " rules found");
    } finally {
      Files.deleteIfExists(file);
    }
  }

  /**
   * {@code dashboards/schema-check}: each dashboard typed as Grafana's {@code Dashboard} from
   * {@code @grafana/schema} and compiled with {@code tsc}, both pinned in its package-lock.json.
   */
  @Test
  void dashboardsTypeCheckAgainstGrafanasSchema() throws Exception {
    var npm = Commands.find("npm");
    ClientTools.requireTool(npm.isPresent(), "npm not on PATH: Grafana schema check skipped");
    Path project = dir().resolve("schema-check");
    Commands.Result install = Commands.npmCi(npm.get(), project);
    assertThat(install.exit()).as("npm ci:\n%s", install.output()).isZero();
    Commands.Result check =
        Commands.run(
            project,
            Duration.ofMinutes(2),
            null,
            List.of(npm.get().toString(), "run", "--silent", "check"));
    assertThat(check.exit()).as("tsc:\n%s", check.output()).isZero();
    assertThat(check.output()).contains("generated 3 dashboard checks");
  }
}

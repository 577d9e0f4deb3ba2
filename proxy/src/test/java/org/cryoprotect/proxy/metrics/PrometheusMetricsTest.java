package org.cryoprotect.proxy.metrics;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatCode;

import io.prometheus.metrics.expositionformats.ExpositionFormats;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;
import org.cryoprotect.proxy.testing.ClientTools;
import org.cryoprotect.proxy.testing.Commands;
import org.cryoprotect.proxy.testing.Exposition;
import org.junit.jupiter.api.Test;

class PrometheusMetricsTest {
  private final PrometheusMetrics metrics = new PrometheusMetrics("9.9.9");

  static String text(PrometheusMetrics metrics, boolean openMetrics) throws IOException {
    ExpositionFormats formats = ExpositionFormats.init();
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    if (openMetrics) {
      formats.getOpenMetricsTextFormatWriter().write(out, metrics.registry().scrape());
    } else {
      formats.getPrometheusTextFormatWriter().write(out, metrics.registry().scrape());
    }
    return out.toString(StandardCharsets.UTF_8);
  }

  private Exposition scrape() throws IOException {
    return Exposition.parse(text(metrics, false));
  }

  @Test
  void countersCountEvents() throws IOException {
    metrics.clientLogin("app", "alice");
    metrics.clientLogin("app", "bob");
    metrics.clientLogin("other", "alice");
    metrics.clientClosed("app", "alice");
    metrics.clientLoginFailed("password");
    metrics.clientLoginFailed("password");
    metrics.clientLoginFailed("user");
    metrics.bytes(ProxyMetrics.IN, 100);
    metrics.bytes(ProxyMetrics.IN, 23);
    metrics.bytes(ProxyMetrics.OUT, 4096);
    metrics.error("42P01", ProxyMetrics.SERVER);
    metrics.error("42", ProxyMetrics.SERVER);
    metrics.error("08P01", ProxyMetrics.PROXY);
    metrics.pin("set");
    metrics.pin("listen");
    metrics.pin("set");
    metrics.serverPrepare();
    metrics.serverPrepare();
    metrics.preparedEviction();
    metrics.breakerTransition("db1:5432", "closed", "open");
    metrics.retry("db1:5432");
    metrics.retry("db1:5432");
    metrics.replay("connection_lost");
    metrics.probe("db1:5432", true);
    metrics.probe("db1:5432", false);
    metrics.probe("db1:5432", true);

    Exposition e = scrape();
    assertThat(e.value("cryoproxy_client_logins_total", "database", "app")).isEqualTo(2);
    assertThat(e.value("cryoproxy_client_logins_total", "database", "other")).isEqualTo(1);
    assertThat(e.value("cryoproxy_client_disconnects_total", "database", "app")).isEqualTo(1);
    assertThat(e.value("cryoproxy_auth_failures_total", "reason", "password")).isEqualTo(2);
    assertThat(e.value("cryoproxy_auth_failures_total", "reason", "user")).isEqualTo(1);
    assertThat(e.value("cryoproxy_bytes_total", "direction", "in")).isEqualTo(123);
    assertThat(e.value("cryoproxy_bytes_total", "direction", "out")).isEqualTo(4096);
    assertThat(e.value("cryoproxy_errors_total", "class", "42", "origin", "server")).isEqualTo(2);
    assertThat(e.value("cryoproxy_errors_total", "class", "08", "origin", "proxy")).isEqualTo(1);
    assertThat(e.value("cryoproxy_pins_total", "reason", "set")).isEqualTo(2);
    assertThat(e.value("cryoproxy_pins_total", "reason", "listen")).isEqualTo(1);
    assertThat(e.value("cryoproxy_server_prepares_total")).isEqualTo(2);
    assertThat(e.value("cryoproxy_prepared_evictions_total")).isEqualTo(1);
    assertThat(
            e.value(
                "cryoproxy_breaker_transitions_total",
                "node",
                "db1:5432",
                "from",
                "closed",
                "to",
                "open"))
        .isEqualTo(1);
    assertThat(e.value("cryoproxy_retries_total", "node", "db1:5432")).isEqualTo(2);
    assertThat(e.value("cryoproxy_replays_total", "reason", "connection_lost")).isEqualTo(1);
    assertThat(e.value("cryoproxy_probes_total", "node", "db1:5432", "result", "ok")).isEqualTo(2);
    assertThat(e.value("cryoproxy_probes_total", "node", "db1:5432", "result", "failed"))
        .isEqualTo(1);
  }

  @Test
  void knownNodesAndReplayReasonsAreExportedAtZeroBeforeTheirFirstEvent() throws IOException {
    Exposition fresh = scrape();
    assertThat(fresh.value("cryoproxy_replays_total", "reason", "connection_lost")).isZero();
    assertThat(fresh.value("cryoproxy_replays_total", "reason", "read_only")).isZero();
    assertThat(fresh.has("cryoproxy_retries_total")).isFalse();
    assertThat(fresh.has("cryoproxy_breaker_transitions_total")).isFalse();

    metrics.retry("db1:5432");
    metrics.initialiseNodes(List.of("db1:5432", "db2:5432"));
    metrics.initialiseNodes(List.of("db1:5432", "db2:5432")); // a reload: counts are kept

    Exposition e = scrape();
    assertThat(e.value("cryoproxy_retries_total", "node", "db1:5432")).isEqualTo(1);
    assertThat(e.value("cryoproxy_retries_total", "node", "db2:5432")).isZero();
    for (String node : List.of("db1:5432", "db2:5432")) {
      for (String[] t :
          new String[][] {
            {"closed", "open"},
            {"open", "half_open"},
            {"half_open", "closed"},
            {"half_open", "open"}
          }) {
        assertThat(
                e.value(
                    "cryoproxy_breaker_transitions_total", "node", node, "from", t[0], "to", t[1]))
            .as("%s %s -> %s", node, t[0], t[1])
            .isZero();
      }
    }
    // Nothing beyond the transitions a breaker can make: no closed -> half_open, no self-loops.
    assertThat(
            e.samples().stream()
                .filter(s -> s.name().equals("cryoproxy_breaker_transitions_total"))
                .count())
        .isEqualTo(8);
    assertThat(e.samples().stream().filter(s -> s.name().equals("cryoproxy_retries_total")).count())
        .isEqualTo(2);
  }

  @Test
  void histogramsCountEveryObservationInSeconds() throws IOException {
    metrics.checkout("app", "db1:5432", 50_000); // 50 µs
    metrics.checkout("app", "db1:5432", 3_000_000); // 3 ms
    metrics.checkout("app", "db1:5432", 20_000_000_000L); // 20 s, above the last bucket
    metrics.query("app", ProxyMetrics.PRIMARY, 2_000_000_000L);
    metrics.query("app", ProxyMetrics.REPLICA, 1_000_000);
    metrics.transaction("app", ProxyMetrics.PRIMARY, 5_000_000);

    Exposition e = scrape();
    String[] pool = {"database", "app", "node", "db1:5432"};
    assertThat(e.value("cryoproxy_acquire_seconds_count", pool)).isEqualTo(3);
    assertThat(e.value("cryoproxy_acquire_seconds_sum", pool)).isCloseTo(20.00305, within());
    assertThat(e.value("cryoproxy_acquire_seconds_bucket", bucket(pool, "1.0E-4"))).isEqualTo(1);
    assertThat(e.value("cryoproxy_acquire_seconds_bucket", bucket(pool, "0.005"))).isEqualTo(2);
    assertThat(e.value("cryoproxy_acquire_seconds_bucket", bucket(pool, "10.0"))).isEqualTo(2);
    assertThat(e.value("cryoproxy_acquire_seconds_bucket", bucket(pool, "+Inf"))).isEqualTo(3);
    assertThat(
            e.samples().stream()
                .filter(s -> s.name().equals("cryoproxy_acquire_seconds_bucket"))
                .count())
        .as("16 buckets from 100 µs to 10 s, and +Inf")
        .isEqualTo(17);

    assertThat(e.value("cryoproxy_query_seconds_count", "database", "app", "route", "primary"))
        .isEqualTo(1);
    assertThat(e.value("cryoproxy_query_seconds_sum", "database", "app", "route", "primary"))
        .isCloseTo(2.0, within());
    assertThat(
            e.value(
                "cryoproxy_query_seconds_bucket",
                "database",
                "app",
                "route",
                "replica",
                "le",
                "0.001"))
        .isEqualTo(1);
    assertThat(
            e.value("cryoproxy_transaction_seconds_count", "database", "app", "route", "primary"))
        .isEqualTo(1);
    assertThat(e.types())
        .containsEntry("cryoproxy_acquire_seconds", "histogram")
        .containsEntry("cryoproxy_query_seconds", "histogram")
        .containsEntry("cryoproxy_transaction_seconds", "histogram");
  }

  private static String[] bucket(String[] labels, String le) {
    List<String> all = new ArrayList<>(List.of(labels));
    all.add("le");
    all.add(le);
    return all.toArray(String[]::new);
  }

  private static org.assertj.core.data.Offset<Double> within() {
    return org.assertj.core.data.Offset.offset(1e-9);
  }

  @Test
  void poolGaugesAreReadFromTheSupplierAtEachScrape() throws IOException {
    List<PoolStats> pools = new ArrayList<>();
    pools.add(new PoolStats("app", "alice", "db1:5432", 3, 2, 5, 3, 0, 0, 1, 0, 0, 1, 4, 250_000));
    pools.add(new PoolStats("app", "bob", "db1:5432", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
    metrics.registerPools(() -> List.copyOf(pools));

    Exposition e = scrape();
    String[] alice = {"database", "app", "user", "alice", "node", "db1:5432"};
    assertThat(e.value("cryoproxy_cl_active", alice)).isEqualTo(3);
    assertThat(e.value("cryoproxy_cl_waiting", alice)).isEqualTo(2);
    assertThat(e.value("cryoproxy_cl_idle", alice)).isEqualTo(5);
    assertThat(e.value("cryoproxy_sv_active", alice)).isEqualTo(3);
    assertThat(e.value("cryoproxy_sv_idle", alice)).isEqualTo(1);
    assertThat(e.value("cryoproxy_sv_used", alice)).isEqualTo(0);
    assertThat(e.value("cryoproxy_sv_login", alice)).isEqualTo(1);
    assertThat(e.value("cryoproxy_pool_size", alice)).isEqualTo(4);
    assertThat(e.value("cryoproxy_pool_utilisation", alice)).isEqualTo(0.75);
    assertThat(e.value("cryoproxy_maxwait_seconds", alice)).isEqualTo(0.25);
    assertThat(e.value("cryoproxy_pool_utilisation", "user", "bob"))
        .as("an empty pool of size 0 is not NaN")
        .isEqualTo(0);

    pools.remove(1);
    pools.set(0, new PoolStats("app", "alice", "db1:5432", 4, 0, 5, 4, 0, 0, 0, 0, 0, 0, 4, 0));
    e = scrape();
    assertThat(e.value("cryoproxy_pool_utilisation", alice)).isEqualTo(1.0);
    assertThat(e.has("cryoproxy_cl_active", "user", "bob")).isFalse();
  }

  @Test
  void nodeGaugesExportLagForReplicasOnly() throws IOException {
    metrics.registerNodes(
        () ->
            List.of(
                new NodeStats("db1:5432", "primary", NodeStats.CLOSED, 0, 0, true),
                new NodeStats("db2:5432", "replica", NodeStats.OPEN, 12.5, 4096, false)));

    Exposition e = scrape();
    assertThat(e.value("cryoproxy_breaker_state", "node", "db1:5432")).isEqualTo(0);
    assertThat(e.value("cryoproxy_breaker_state", "node", "db2:5432")).isEqualTo(2);
    assertThat(e.value("cryoproxy_node_up", "node", "db1:5432", "role", "primary")).isEqualTo(1);
    assertThat(e.value("cryoproxy_node_up", "node", "db2:5432", "role", "replica")).isEqualTo(0);
    assertThat(e.value("cryoproxy_replica_lag_seconds", "node", "db2:5432")).isEqualTo(12.5);
    assertThat(e.value("cryoproxy_replica_lag_bytes", "node", "db2:5432")).isEqualTo(4096);
    assertThat(e.has("cryoproxy_replica_lag_seconds", "node", "db1:5432")).isFalse();
  }

  @Test
  void aFailingSupplierCostsOnlyItsOwnGauges() throws IOException {
    metrics.registerPools(
        () -> {
          throw new IllegalStateException("pool map being rebuilt");
        });
    metrics.registerNodes(() -> List.of(new NodeStats("db1:5432", "primary", 0, 0, 0, true)));
    metrics.clientLogin("app", "alice");

    Exposition e = scrape();
    assertThat(e.has("cryoproxy_cl_active")).isFalse();
    assertThat(e.value("cryoproxy_node_up", "node", "db1:5432")).isEqualTo(1);
    assertThat(e.value("cryoproxy_client_logins_total", "database", "app")).isEqualTo(1);
  }

  @Test
  void preparedStatementGaugeFollowsItsCallback() throws IOException {
    assertThat(scrape().value("cryoproxy_prepared_statements")).isEqualTo(0);
    AtomicLong size = new AtomicLong(17);
    metrics.registerPreparedStatements(size::get);
    assertThat(scrape().value("cryoproxy_prepared_statements")).isEqualTo(17);
    size.set(3);
    assertThat(scrape().value("cryoproxy_prepared_statements")).isEqualTo(3);
  }

  @Test
  void buildInfoAndJvmMetricsAreExported() throws IOException {
    Exposition e = scrape();
    assertThat(e.value("cryoproxy_build_info", "version", "9.9.9")).isEqualTo(1);
    assertThat(e.sampleNames())
        .contains(
            "jvm_memory_used_bytes",
            "jvm_threads_current",
            "jvm_gc_collection_seconds_count",
            "process_cpu_seconds_total");
  }

  @Test
  void eachInstanceHasItsOwnRegistry() throws IOException {
    PrometheusMetrics other = new PrometheusMetrics("9.9.9");
    metrics.clientLogin("app", "alice");
    assertThat(Exposition.parse(text(other, false)).has("cryoproxy_client_logins_total")).isFalse();
    assertThat(scrape().value("cryoproxy_client_logins_total")).isEqualTo(1);
  }

  @Test
  void nullLabelValuesDoNotThrow() {
    assertThatCode(
            () -> {
              metrics.clientLogin(null, null);
              metrics.error(null, null);
              metrics.query(null, null, 1);
              scrape();
            })
        .doesNotThrowAnyException();
  }

  @Test
  void noneIgnoresEverything() {
    ProxyMetrics none = ProxyMetrics.NONE;
    assertThatCode(
            () -> {
              none.clientLogin("app", "u");
              none.checkout("app", "n", 1);
              none.bytes(ProxyMetrics.IN, 1);
              none.registerPools(List::of);
              none.registerNodes(List::of);
              none.registerPreparedStatements(() -> 1);
            })
        .doesNotThrowAnyException();
  }

  @Test
  void openMetricsTextParsesAndEndsWithEof() throws IOException {
    metrics.clientLogin("app", "alice");
    metrics.query("app", ProxyMetrics.PRIMARY, 1_000);
    String text = text(metrics, true);
    assertThat(text).endsWith("# EOF\n");
    Exposition e = Exposition.parse(text);
    assertThat(e.value("cryoproxy_client_logins_total", "database", "app")).isEqualTo(1);
    assertThat(e.types()).containsEntry("cryoproxy_build", "info");
  }

  /** promtool's linter is the reference parser; Debian's prometheus package ships it. */
  @Test
  void promtoolAcceptsTheExposition() throws Exception {
    Optional<Path> promtool = Commands.find("promtool");
    ClientTools.requireTool(
        promtool.isPresent(), "promtool not on PATH (Debian package prometheus)");
    metrics.clientLogin("app", "alice");
    metrics.checkout("app", "db1:5432", 1_000);
    metrics.registerPools(
        () ->
            List.of(new PoolStats("app", "alice", "db1:5432", 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0)));
    Commands.Result r =
        Commands.run(
            Path.of("."),
            Duration.ofSeconds(30),
            text(metrics, false),
            List.of(promtool.get().toString(), "check", "metrics"));
    assertThat(r.exit()).as(r.output()).isZero();
  }
}

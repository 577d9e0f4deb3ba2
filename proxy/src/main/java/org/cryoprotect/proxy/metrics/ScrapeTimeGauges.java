package org.cryoprotect.proxy.metrics;

import static org.cryoprotect.proxy.metrics.PrometheusMetrics.label;

import io.prometheus.metrics.model.registry.MultiCollector;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot;
import io.prometheus.metrics.model.snapshots.GaugeSnapshot.GaugeDataPointSnapshot;
import io.prometheus.metrics.model.snapshots.Labels;
import io.prometheus.metrics.model.snapshots.MetricSnapshot;
import io.prometheus.metrics.model.snapshots.MetricSnapshots;
import java.util.ArrayList;
import java.util.Collection;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Supplier;
import java.util.function.ToDoubleFunction;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Pool and node gauges, computed from one call of each supplier per scrape so that all the gauges
 * of one scrape describe the same instant (separate callbacks would each see a different one).
 */
final class ScrapeTimeGauges implements MultiCollector {
  private static final Logger log = LoggerFactory.getLogger(ScrapeTimeGauges.class);

  private record Gauge<T>(String name, String help, ToDoubleFunction<T> value) {}

  private static final List<Gauge<PoolStats>> POOL_GAUGES =
      List.of(
          new Gauge<>(
              "cryoproxy_cl_active", "Clients linked to a server connection", s -> s.clActive()),
          new Gauge<>(
              "cryoproxy_cl_waiting",
              "Clients waiting for a server connection",
              s -> s.clWaiting()),
          new Gauge<>(
              "cryoproxy_cl_idle", "Clients connected and not in a transaction", s -> s.clIdle()),
          new Gauge<>(
              "cryoproxy_sv_active",
              "Server connections lent out (active, active_cancel, tested, being_canceled)",
              s -> s.svBusy()),
          new Gauge<>("cryoproxy_sv_idle", "Server connections ready for reuse", s -> s.svIdle()),
          new Gauge<>(
              "cryoproxy_sv_used",
              "Idle server connections past server_check_delay, checked before next use",
              s -> s.svUsed()),
          new Gauge<>("cryoproxy_sv_login", "Server connections logging in", s -> s.svLogin()),
          new Gauge<>(
              "cryoproxy_pool_size", "Configured maximum of server connections", s -> s.poolSize()),
          new Gauge<>(
              "cryoproxy_pool_utilisation",
              "sv_active / pool_size",
              s -> s.poolSize() == 0 ? 0 : (double) s.svBusy() / s.poolSize()),
          new Gauge<>(
              "cryoproxy_maxwait_seconds",
              "How long the oldest waiting client has waited",
              s -> s.maxWaitMicros() / 1e6));

  private static final String BREAKER = "cryoproxy_breaker_state";
  private static final String LAG_SECONDS = "cryoproxy_replica_lag_seconds";
  private static final String LAG_BYTES = "cryoproxy_replica_lag_bytes";
  private static final String UP = "cryoproxy_node_up";

  volatile Supplier<? extends Collection<PoolStats>> pools = List::of;
  volatile Supplier<? extends Collection<NodeStats>> nodes = List::of;

  @Override
  public MetricSnapshots collect() {
    List<MetricSnapshot> snapshots = new ArrayList<>();
    snapshots.addAll(poolSnapshots());
    snapshots.addAll(nodeSnapshots());
    return new MetricSnapshots(snapshots);
  }

  private List<MetricSnapshot> poolSnapshots() {
    Map<String, GaugeSnapshot.Builder> builders = new LinkedHashMap<>();
    for (Gauge<PoolStats> gauge : POOL_GAUGES) {
      builders.put(gauge.name(), GaugeSnapshot.builder().name(gauge.name()).help(gauge.help()));
    }
    try {
      for (PoolStats pool : pools.get()) {
        Labels labels =
            Labels.of(
                "database",
                label(pool.database()),
                "user",
                label(pool.user()),
                "node",
                label(pool.node()));
        for (Gauge<PoolStats> gauge : POOL_GAUGES) {
          builders.get(gauge.name()).dataPoint(point(gauge.value().applyAsDouble(pool), labels));
        }
      }
      return build(builders);
    } catch (RuntimeException e) {
      // A broken supplier (or two pools with the same labels) must not fail the whole scrape.
      log.warn("pool gauges left out of this scrape: {}", e.toString());
      return List.of();
    }
  }

  private List<MetricSnapshot> nodeSnapshots() {
    Map<String, GaugeSnapshot.Builder> builders = new LinkedHashMap<>();
    builders.put(
        BREAKER,
        GaugeSnapshot.builder()
            .name(BREAKER)
            .help("Circuit breaker state per node: 0 closed, 1 half-open, 2 open"));
    builders.put(
        LAG_SECONDS,
        GaugeSnapshot.builder().name(LAG_SECONDS).help("Replay lag of each replica, in seconds"));
    builders.put(
        LAG_BYTES,
        GaugeSnapshot.builder().name(LAG_BYTES).help("WAL not yet replayed by each replica"));
    builders.put(
        UP, GaugeSnapshot.builder().name(UP).help("1 if the node's last health probe succeeded"));
    try {
      for (NodeStats node : nodes.get()) {
        Labels byNode = Labels.of("node", label(node.node()));
        builders.get(BREAKER).dataPoint(point(node.breakerState(), byNode));
        if (ProxyMetrics.REPLICA.equals(node.role())) {
          builders.get(LAG_SECONDS).dataPoint(point(node.lagSeconds(), byNode));
          builders.get(LAG_BYTES).dataPoint(point(node.lagBytes(), byNode));
        }
        builders
            .get(UP)
            .dataPoint(point(node.healthy() ? 1 : 0, byNode.add("role", label(node.role()))));
      }
      return build(builders);
    } catch (RuntimeException e) {
      log.warn("node gauges left out of this scrape: {}", e.toString());
      return List.of();
    }
  }

  private static GaugeDataPointSnapshot point(double value, Labels labels) {
    return GaugeDataPointSnapshot.builder().value(value).labels(labels).build();
  }

  private static List<MetricSnapshot> build(Map<String, GaugeSnapshot.Builder> builders) {
    List<MetricSnapshot> built = new ArrayList<>();
    builders.values().forEach(b -> built.add(b.build()));
    return built;
  }

  @Override
  public List<String> getPrometheusNames() {
    List<String> names = new ArrayList<>();
    POOL_GAUGES.forEach(g -> names.add(g.name()));
    names.addAll(List.of(BREAKER, LAG_SECONDS, LAG_BYTES, UP));
    return names;
  }
}

package org.cryoprotect.proxy.routing;

import io.netty.util.concurrent.DefaultThreadFactory;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.ThreadLocalRandom;
import java.util.function.Consumer;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.config.ProxyConfig.Routing;
import org.cryoprotect.proxy.health.HealthProbes;
import org.cryoprotect.proxy.health.NodeHealth;
import org.cryoprotect.proxy.metrics.ProxyMetrics;

/**
 * Chooses the node for each transaction (DESIGN §5): the writer for everything that is not proven
 * read-only, and for reads the replica with the least outstanding work among those that are up,
 * whose breaker admits work, that are within the lag thresholds and that have replayed the client's
 * last commit. No such replica: the writer.
 *
 * <p>The writer is the configured primary, unless the health probes find it down or in recovery
 * while a configured replica is up and out of recovery: a replica promoted by an external tool
 * takes the writes. The proxy never promotes anything itself.
 *
 * <p>Reads only look at the latest probe results and at atomic counters: safe and cheap on event
 * loops.
 */
public final class Router implements AutoCloseable {
  private final HealthProbes health;
  private final ProxyMetrics metrics;
  private volatile ProxyConfig config;
  private final Map<Endpoint, NodeGuard> guards = new ConcurrentHashMap<>();
  private final Map<String, FunctionVolatility> volatility = new ConcurrentHashMap<>();
  private volatile Consumer<NodeGuard> whenOpened = g -> {};
  private volatile Consumer<Endpoint> whenUnreachable = e -> {};
  private final ExecutorService catalog =
      Executors.newSingleThreadExecutor(new DefaultThreadFactory("cryoproxy-catalog", true));

  public Router(ProxyConfig config, HealthProbes health, ProxyMetrics metrics) {
    this.config = config;
    this.health = health;
    this.metrics = metrics;
    health.listen(this::observed);
    health.admitting(
        node -> {
          NodeGuard g = guards.get(node);
          return g == null || g.admits();
        });
  }

  /**
   * What to do to a node's connections: {@code opened} when its breaker opens (fail the waiting
   * clients, close idle connections), {@code unreachable} when a probe cannot reach it (close them
   * all: clients blocked on a dead socket get their error now, not after the kernel gives up).
   */
  public void onNodeFailure(Consumer<NodeGuard> opened, Consumer<Endpoint> unreachable) {
    this.whenOpened = opened;
    this.whenUnreachable = unreachable;
  }

  public void reconfigure(ProxyConfig next) {
    this.config = next;
  }

  public NodeGuard guard(Endpoint node) {
    return guards.computeIfAbsent(
        node, n -> new NodeGuard(n, config.resilience(), metrics, g -> whenOpened.accept(g)));
  }

  /**
   * A server connection to {@code node} closed while a client used it. Not counted against the
   * node's breaker: a single backend ended by an administrator, or made to end by one client's
   * input, says nothing about the node. The node is probed at once instead; if it is down, the
   * probe and the reconnects fail, and those count.
   */
  public void lost(Endpoint node) {
    health.probeNow(node);
  }

  /** Breaker state of {@code node} as a {@link org.cryoprotect.proxy.metrics.NodeStats} state. */
  public int breakerState(Endpoint node) {
    NodeGuard g = guards.get(node);
    return g == null ? 0 : g.state();
  }

  private void observed(NodeHealth h) {
    NodeGuard g = guard(h.node());
    g.role(h.role().label());
    if (h.up()) {
      g.probeSucceeded();
    } else if (g.probeFailed(h.database(), h.error(), probeBegan(h))) {
      whenUnreachable.accept(h.node());
    }
  }

  /** When a failed probe began, at the latest: its end minus the probe timeout, as nanoTime. */
  private long probeBegan(NodeHealth h) {
    long sinceEnd =
        h.checkedAt() == null ? 0 : Duration.between(h.checkedAt(), Instant.now()).toNanos();
    return System.nanoTime() - sinceEnd - config.health().timeout().toNanos();
  }

  /** Whether reads of {@code db} may go to replicas at all. */
  public static boolean routes(Database db) {
    return db.routing().enabled() && !db.replicas().isEmpty();
  }

  /** The node that takes writes for {@code db} now. */
  public Endpoint writer(Database db) {
    if (db.replicas().isEmpty()) {
      return db.primary();
    }
    List<NodeHealth> nodes = health.database(db.name());
    NodeHealth primary = find(nodes, db.primary());
    if (primary == null || primary.checkedAt() == null || primary.usable()) {
      return db.primary();
    }
    for (NodeHealth h : nodes) {
      if (h.role() == NodeHealth.Role.REPLICA && h.up() && !h.inRecovery()) {
        return h.node(); // promoted
      }
    }
    return db.primary();
  }

  /**
   * The replica for a read, or null when none qualifies (the caller uses the writer). {@code
   * minLsn} is the WAL position the replica must have replayed (0: any); {@code avoid} a node that
   * just failed this work (may be null).
   */
  public Endpoint reader(Database db, long minLsn, Endpoint avoid) {
    Routing routing = db.routing();
    double maxLagSeconds = routing.maxLag().toNanos() / 1e9;
    NodeGuard best = null;
    int ties = 0;
    for (NodeHealth h : health.database(db.name())) {
      if (h.role() != NodeHealth.Role.REPLICA
          || !h.usable()
          || h.node().equals(avoid)
          || h.lagSeconds() > maxLagSeconds
          || h.lagBytes() > routing.maxLagBytes()
          || (minLsn != 0 && h.lsn() < minLsn)) {
        continue;
      }
      NodeGuard g = guard(h.node());
      if (!g.admits()) {
        continue;
      }
      if (best == null || g.outstanding() < best.outstanding()) {
        best = g;
        ties = 1;
      } else if (g.outstanding() == best.outstanding()
          && ThreadLocalRandom.current().nextInt(++ties) == 0) {
        best = g; // spread equal load evenly instead of always the first
      }
    }
    return best == null ? null : best.node();
  }

  /**
   * The writer's WAL position as reported by a probe that began after {@code since}, or {@code
   * Long.MAX_VALUE} while there is none: what a client's reads must see when the position after its
   * last write could not be learned (the connection broke first). Any commit the client saw before
   * {@code since} is at or below it.
   */
  public long writerLsnAfter(Database db, Instant since) {
    NodeHealth h = find(health.database(db.name()), writer(db));
    if (h == null
        || !h.up()
        || h.checkedAt() == null
        || !h.checkedAt().minus(config.health().timeout()).isAfter(since)) {
      return Long.MAX_VALUE;
    }
    return h.lsn();
  }

  /** Whether {@code node} is a configured replica of {@code db} (not the writer now). */
  public boolean isReplica(Database db, Endpoint node) {
    return db.replicas().contains(node) && !node.equals(writer(db));
  }

  public FunctionVolatility volatility(Database db) {
    return volatility.computeIfAbsent(db.name(), n -> new FunctionVolatility(health, n, catalog));
  }

  @Override
  public void close() {
    catalog.shutdownNow();
  }

  private static NodeHealth find(List<NodeHealth> nodes, Endpoint node) {
    for (NodeHealth h : nodes) {
      if (h.node().equals(node)) {
        return h;
      }
    }
    return null;
  }
}

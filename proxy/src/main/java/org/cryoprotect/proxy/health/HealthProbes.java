package org.cryoprotect.proxy.health;

import com.zaxxer.hikari.HikariDataSource;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.sql.Connection;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ScheduledThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.function.Consumer;
import java.util.function.Predicate;
import java.util.function.ToIntFunction;
import org.cryoprotect.proxy.admin.Readiness;
import org.cryoprotect.proxy.auth.Revocations;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.config.ProxyConfig.Health;
import org.cryoprotect.proxy.health.NodeHealth.Role;
import org.cryoprotect.proxy.health.NodeProbe.Target;
import org.cryoprotect.proxy.metrics.NodeStats;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Control-plane health probes (DESIGN §4): the primary and every replica of every configured
 * database, each probed every {@code health.interval} on a few dedicated daemon threads, never on
 * an event loop. Readers ({@link #status}, {@link #nodeStats}, {@link #node}) only look at the
 * latest results and never wait for a probe, so they are safe on event loops and HTTP threads.
 *
 * <p>A node listed under several databases is probed once per database: each probe logs in to that
 * database with that database's credentials, which is what a client of it would need.
 */
public final class HealthProbes implements Readiness, AutoCloseable {
  private static final Logger log = LoggerFactory.getLogger(HealthProbes.class);
  // A probe of a down node holds its thread for up to about twice health.timeout; a few threads
  // keep one dead node from delaying the probes of the others.
  private static final int MAX_THREADS = 4;

  private final ProxyMetrics metrics;
  private final ScheduledThreadPoolExecutor scheduler;
  private volatile List<NodeProbe> probes; // config order; replaced whole, under this
  private volatile Map<String, List<NodeProbe>> byDatabase;
  private volatile Consumer<NodeHealth> listener = h -> {};
  private volatile Predicate<Endpoint> admits = n -> true;
  private final Map<String, HikariDataSource> control = new ConcurrentHashMap<>();
  private volatile ProxyConfig config;
  private boolean started; // guarded by this
  private volatile boolean closed; // written under this

  public HealthProbes(ProxyConfig config, ProxyMetrics metrics) {
    this.metrics = metrics;
    this.scheduler =
        new ScheduledThreadPoolExecutor(1, new DefaultThreadFactory("cryoproxy-health", true));
    scheduler.setRemoveOnCancelPolicy(true);
    this.config = config;
    this.probes = build(config, Map.of());
    this.byDatabase = index(probes);
    scheduler.setCorePoolSize(threads(probes.size()));
  }

  /** Starts probing: the first round at once, then every interval. */
  public synchronized void start() {
    if (started || closed) {
      return;
    }
    started = true;
    probes.forEach(this::schedule);
  }

  /**
   * Follows a RELOAD: probes of unchanged nodes go on with their results; new nodes are probed from
   * now; removed ones stop. A changed login, TLS, interval or timeout replaces the probe but keeps
   * its last result until the new one has probed.
   */
  public synchronized void reconfigure(ProxyConfig next) {
    if (closed) {
      return;
    }
    Map<Target, NodeProbe> kept = new LinkedHashMap<>();
    for (NodeProbe p : probes) {
      kept.put(p.target(), p);
    }
    List<NodeProbe> before = probes;
    List<NodeProbe> now = build(next, kept);
    probes = now;
    byDatabase = index(now);
    config = next;
    control.values().forEach(HikariDataSource::close);
    control.clear();
    for (NodeProbe old : before) {
      if (!now.contains(old)) {
        if (old.task() != null) {
          old.task().cancel(false);
        }
        old.close();
      }
    }
    scheduler.setCorePoolSize(threads(now.size()));
    if (started) {
      now.stream().filter(p -> p.task() == null).forEach(this::schedule);
    }
  }

  private List<NodeProbe> build(ProxyConfig config, Map<Target, NodeProbe> existing) {
    Map<String, NodeHealth> previous = new LinkedHashMap<>();
    existing.values().forEach(p -> previous.put(key(p.target()), p.latest()));
    List<NodeProbe> built = new ArrayList<>();
    for (Database db : config.databases().values()) {
      List<Target> targets = new ArrayList<>();
      targets.add(target(config, db, db.primary(), Role.PRIMARY));
      db.replicas().forEach(r -> targets.add(target(config, db, r, Role.REPLICA)));
      for (Target t : targets) {
        NodeProbe same = existing.get(t);
        built.add(same != null ? same : new NodeProbe(t, previous.get(key(t))));
      }
    }
    return List.copyOf(built);
  }

  private static Map<String, List<NodeProbe>> index(List<NodeProbe> probes) {
    Map<String, List<NodeProbe>> by = new LinkedHashMap<>();
    for (NodeProbe p : probes) {
      by.computeIfAbsent(p.target().database(), d -> new ArrayList<>()).add(p);
    }
    by.replaceAll((d, list) -> List.copyOf(list));
    return Map.copyOf(by);
  }

  /** Who hears every probe result (the router: breakers and the choice of nodes). */
  public void listen(Consumer<NodeHealth> listener) {
    this.listener = listener;
  }

  /**
   * Whether the data plane would try a node now (its circuit breaker admits work): a primary that
   * answers probes but whose breaker is open would still refuse logins, so it is not ready.
   */
  public void admitting(Predicate<Endpoint> admits) {
    this.admits = admits;
  }

  /** The latest result of each node of {@code database}: primary first, then the replicas. */
  public List<NodeHealth> database(String database) {
    List<NodeProbe> mine = byDatabase.getOrDefault(database, List.of());
    List<NodeHealth> result = new ArrayList<>(mine.size());
    for (NodeProbe p : mine) {
      result.add(p.latest());
    }
    return result;
  }

  /**
   * A control-plane connection to the primary of {@code database}, with the probes' login, from a
   * small pool of its own (catalog look-ups must never hold up a probe). Blocking: never call it on
   * an event loop.
   */
  public Connection controlConnection(String database) throws SQLException {
    HikariDataSource ds =
        control.computeIfAbsent(
            database,
            d -> {
              Database db = config.databases().get(d);
              if (db == null) {
                throw new IllegalArgumentException("unknown database " + d);
              }
              return new HikariDataSource(
                  NodeProbe.poolConfig(
                      target(config, db, db.primary(), Role.PRIMARY), "control", 2));
            });
    return ds.getConnection();
  }

  private static String key(Target t) {
    return t.database() + "\u0000" + t.role() + "\u0000" + t.node();
  }

  /**
   * Where the revocation list is read: the primary of each distinct (node, database name), with the
   * health probes' login, which needs SELECT on {@code auth.revoked_tokens}.
   */
  public static List<Revocations.Source> revocationSources(ProxyConfig config) {
    Map<String, Revocations.Source> sources = new LinkedHashMap<>();
    for (Database db : config.databases().values()) {
      String name = db.dbname() + " on " + db.primary();
      var ds = controlDataSource(config, db, "revocations");
      sources.putIfAbsent(name, new Revocations.Source(name, ds::getConnection));
    }
    return List.copyOf(sources.values());
  }

  /**
   * A control-plane login to {@code db}'s primary: the health probes' login, or {@code user} and
   * {@code password} when {@code user} is set.
   */
  public static org.postgresql.ds.PGSimpleDataSource controlDataSource(
      ProxyConfig config, Database db, String purpose) {
    return NodeProbe.dataSource(target(config, db, db.primary(), Role.PRIMARY), purpose);
  }

  /**
   * The login: {@code health.user}, else the database's fixed server login, else {@code
   * auth.auth_user}, else {@code postgres}. {@code health.password} overrides the password that
   * goes with the chosen user.
   */
  static Target target(ProxyConfig config, Database db, Endpoint node, Role role) {
    Health health = config.health();
    String user;
    String password;
    if (health.user() != null) {
      user = health.user();
      password = null;
    } else if (db.user() != null) {
      user = db.user();
      password = db.password();
    } else if (config.auth().authUser() != null) {
      user = config.auth().authUser();
      password = config.auth().authPassword();
    } else {
      user = "postgres";
      password = null;
    }
    if (health.password() != null) {
      password = health.password();
    }
    return new Target(
        db.name(),
        node,
        role,
        db.dbname(),
        user,
        password,
        config.serverTls(),
        health.timeout(),
        health.interval());
  }

  private static int threads(int probes) {
    return Math.max(1, Math.min(MAX_THREADS, probes));
  }

  private void schedule(NodeProbe probe) {
    long interval = probe.target().interval().toMillis();
    // Fixed delay, not fixed rate: a probe of a down node that used its whole timeout must not
    // run again back to back and hold a thread the other nodes' probes need.
    probe.task(
        scheduler.scheduleWithFixedDelay(() -> run(probe), 0, interval, TimeUnit.MILLISECONDS));
  }

  /**
   * Probes every database's view of {@code node} now, off schedule: a server connection to it was
   * lost in use. One lost connection is no evidence against the node (an administrator ended a
   * backend, a client's input made it FATAL); the probe says whether the node itself is unwell, and
   * its failures count as any probe's do. Probes already asked for are not asked twice.
   */
  public void probeNow(Endpoint node) {
    for (NodeProbe probe : probes) {
      if (probe.target().node().equals(node) && probe.askNow()) {
        try {
          scheduler.execute(
              () -> {
                probe.asked();
                run(probe);
              });
        } catch (java.util.concurrent.RejectedExecutionException closing) {
          return;
        }
      }
    }
  }

  private void run(NodeProbe probe) {
    // An exception escaping a scheduled task would cancel every later run of it, silently.
    synchronized (probe) { // a probe asked for now and the scheduled one take turns
      runOnce(probe);
    }
  }

  private void runOnce(NodeProbe probe) {
    try {
      NodeHealth before = probe.latest();
      NodeHealth after = probe.probe();
      if (closed || !probes.contains(probe)) {
        return; // interrupted by close, or removed by a reload while it ran: not news
      }
      metrics.probe(probe.target().node().toString(), after.up());
      listener.accept(after);
      logChange(probe, before, after);
    } catch (RuntimeException e) {
      log.error("health probe of {} failed unexpectedly", probe, e);
    }
  }

  private static void logChange(NodeProbe probe, NodeHealth before, NodeHealth after) {
    String was = before.checkedAt() == null ? null : before.detail();
    String is = after.detail();
    if (is.equals(was)) {
      return;
    }
    if (after.usable()) {
      if (was == null) {
        log.debug("{} is up", probe);
      } else {
        log.info("{} is up again", probe);
      }
    } else {
      log.warn("{}: {}", probe, is);
    }
  }

  /** The latest result of every probed node, in configuration order. */
  public List<NodeHealth> nodes() {
    return probes.stream().map(NodeProbe::latest).toList();
  }

  /** The latest result for {@code node} as a primary or replica of {@code database}. */
  public Optional<NodeHealth> node(String database, Endpoint node) {
    return nodes().stream()
        .filter(h -> h.database().equals(database) && h.node().equals(node))
        .findFirst();
  }

  /**
   * {@code /health/ready}: ready when the primary of every database answered its last probe and is
   * not in recovery. Replicas are listed but never make the proxy unready: reads fall back to the
   * primary.
   */
  @Override
  public Status status() {
    boolean ready = true;
    List<NodeStatus> nodes = new ArrayList<>();
    for (NodeHealth h : nodes()) {
      boolean admitted = admits.test(h.node());
      String detail = admitted || !h.up() ? h.publicDetail() : "circuit breaker open";
      nodes.add(
          new NodeStatus(
              h.database(), h.node().toString(), h.role().label(), h.up() && admitted, detail));
      if (h.role() == Role.PRIMARY && (!h.usable() || !admitted)) {
        ready = false;
      }
    }
    return new Status(ready, nodes);
  }

  /**
   * One entry per node address for the node gauges: a node listed under several databases is up
   * only if every one of its probes succeeded, and its lag is the largest seen. The role is the
   * configured one; the breaker state comes from {@code breakers}.
   */
  public List<NodeStats> nodeStats(ToIntFunction<Endpoint> breakers) {
    Map<String, NodeStats> byNode = new LinkedHashMap<>();
    for (NodeHealth h : nodes()) {
      String node = h.node().toString();
      int breaker = breakers.applyAsInt(h.node());
      NodeStats mine =
          new NodeStats(node, h.role().label(), breaker, h.lagSeconds(), h.lagBytes(), h.up());
      byNode.merge(
          node,
          mine,
          (a, b) ->
              new NodeStats(
                  node,
                  a.role(),
                  breaker,
                  Math.max(a.lagSeconds(), b.lagSeconds()),
                  Math.max(a.lagBytes(), b.lagBytes()),
                  a.healthy() && b.healthy()));
    }
    return List.copyOf(byNode.values());
  }

  /** {@link #nodeStats(ToIntFunction)} with every breaker closed. */
  public List<NodeStats> nodeStats() {
    return nodeStats(n -> NodeStats.CLOSED);
  }

  /** Stops probing and closes the probe connections; waits at most a few seconds. */
  @Override
  public void close() {
    List<NodeProbe> all;
    synchronized (this) {
      if (closed) {
        return;
      }
      closed = true;
      all = probes;
    }
    scheduler.shutdownNow();
    control.values().forEach(HikariDataSource::close);
    // Closing the pools also aborts a connection a running probe still holds.
    all.forEach(NodeProbe::close);
    try {
      if (!scheduler.awaitTermination(5, TimeUnit.SECONDS)) {
        log.warn("health probe threads still running after close");
      }
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }
}

package org.cryoprotect.proxy.pool;

import io.netty.channel.EventLoop;
import io.netty.util.concurrent.Future;
import io.netty.util.concurrent.ScheduledFuture;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.cryoprotect.proxy.backend.ServerConnection;
import org.cryoprotect.proxy.backend.ServerConnector;
import org.cryoprotect.proxy.backend.ServerCredentials;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.protocol.frontend.StartupMessage;
import org.cryoprotect.proxy.routing.Router;

/**
 * Every server pool of the proxy, created on first use, plus the per-database connection cap and a
 * once-a-second maintenance pass (lifetime, idle timeout, min idle).
 */
public final class Pools implements AutoCloseable {
  private volatile ProxyConfig config;
  private final ServerConnector connector;
  private final ConcurrentHashMap<PoolKey, ServerPool> pools = new ConcurrentHashMap<>();
  private final ConcurrentHashMap<String, AtomicInteger> perDatabase = new ConcurrentHashMap<>();
  private final ConcurrentHashMap<List<String>, PreparedRegistry> prepared =
      new ConcurrentHashMap<>();
  private final java.util.concurrent.atomic.AtomicLong statementNames =
      new java.util.concurrent.atomic.AtomicLong();
  private final ScheduledFuture<?> maintenance;
  private final EventLoop maintenanceLoop;
  private static final String ALL = "";
  private final java.util.Set<String> paused = new java.util.HashSet<>();

  private final Router router;

  public Pools(
      ProxyConfig config, ServerConnector connector, Router router, EventLoop maintenanceLoop) {
    this.config = config;
    this.connector = connector;
    this.router = router;
    this.maintenanceLoop = maintenanceLoop;
    this.maintenance =
        maintenanceLoop.scheduleWithFixedDelay(this::maintain, 1, 1, TimeUnit.SECONDS);
  }

  public ProxyConfig config() {
    return config;
  }

  /**
   * Once a second: every pool's own upkeep, then pools empty for {@code pool.server_idle_timeout}
   * are forgotten, and with the last pool of a (database, role) its prepared-statement registry.
   */
  private void maintain() {
    long now = System.nanoTime();
    long after = config.pool().serverIdleTimeout().toNanos();
    for (ServerPool pool : pools.values()) {
      pool.maintain(maintenanceLoop);
      if (pool.prunable(now, after) && pools.remove(pool.key(), pool)) {
        PoolKey k = pool.key();
        boolean roleLeft =
            pools.keySet().stream()
                .anyMatch(o -> o.database().equals(k.database()) && o.role().equals(k.role()));
        if (!roleLeft) {
          prepared.remove(List.of(k.database(), k.role()));
        }
      }
    }
  }

  /** A forgotten pool a client still held is in use again. */
  void adopt(ServerPool pool) {
    pools.putIfAbsent(pool.key(), pool);
  }

  /** RELOAD: new limits apply to every pool now; new databases on their first client. */
  public void reconfigure(ProxyConfig next) {
    this.config = next;
    for (ServerPool pool : pools.values()) {
      Database db = next.databases().get(pool.key().database());
      if (db != null) {
        pool.resize(next.poolSize(db));
      }
    }
  }

  public java.util.Collection<ServerPool> all() {
    return pools.values();
  }

  public Router router() {
    return router;
  }

  /**
   * Opens and logs in a server connection to {@code node} through its circuit breaker, retrying
   * transient failures until {@code deadlineNanos}.
   */
  Future<ServerConnection> connect(
      EventLoop loop,
      Endpoint node,
      StartupMessage login,
      ServerCredentials credentials,
      long deadlineNanos) {
    return router
        .guard(node)
        .connect(loop, () -> connector.connect(loop, node, login, credentials), deadlineNanos);
  }

  /**
   * A node failed: clients waiting for one of its connections get {@code why} now, idle connections
   * close, and with {@code active} the connections in use close too (their clients get an error or
   * a replay).
   */
  public void nodeFailed(Endpoint node, Throwable why, boolean active) {
    for (ServerPool pool : pools.values()) {
      if (pool.key().node().equals(node)) {
        pool.nodeFailed(why, active);
      }
    }
  }

  /** The prepared statements of {@code database}'s pools for server login {@code role}. */
  public PreparedRegistry prepared(String database, String role) {
    return prepared.computeIfAbsent(
        List.of(database, role), k -> new PreparedRegistry(REGISTRY_BOUND, statementNames));
  }

  /** Distinct statements remembered, all registries together (a metric). */
  public int preparedCount() {
    int n = 0;
    for (PreparedRegistry registry : prepared.values()) {
      n += registry.size();
    }
    return n;
  }

  /**
   * Distinct statements remembered per (database, role). Far above what applications that use
   * placeholders prepare; what bounds it is a client preparing texts with literals in them.
   */
  static final int REGISTRY_BOUND = 10_000;

  /** The pool of {@code database}'s primary for {@code role}. */
  public ServerPool pool(Database database, String role) {
    return pool(database, role, database.primary());
  }

  public ServerPool pool(Database database, String role, Endpoint node) {
    PoolKey key = new PoolKey(node, database.name(), role);
    ServerPool found =
        pools.computeIfAbsent(
            key,
            k -> {
              ServerPool pool = new ServerPool(k, this, config.poolSize(database));
              if (paused.contains(k.database()) || paused.contains(ALL)) {
                pool.pause();
              }
              return pool;
            });
    found.used();
    return found;
  }

  /** PAUSE: existing pools of {@code database} (null = all) and any created later. */
  public synchronized List<ServerPool> pause(String database) {
    paused.add(database == null ? ALL : database);
    List<ServerPool> selected = select(database);
    selected.forEach(ServerPool::pause);
    return selected;
  }

  public synchronized void resume(String database) {
    if (database == null) {
      paused.clear();
    } else {
      paused.remove(database);
    }
    for (ServerPool pool : select(database)) {
      if (!paused.contains(ALL) && !paused.contains(pool.key().database())) {
        pool.resume();
      }
    }
  }

  /** The pools of {@code database}, or all of them for null. */
  public List<ServerPool> select(String database) {
    List<ServerPool> selected = new ArrayList<>();
    for (ServerPool pool : pools.values()) {
      if (database == null || pool.key().database().equals(database)) {
        selected.add(pool);
      }
    }
    return selected;
  }

  /** Counts one more connection to {@code database} unless that would pass its cap. */
  boolean tryOpen(String database) {
    int cap = config.pool().maxDbConnections();
    AtomicInteger count = count(database);
    while (true) {
      int now = count.get();
      if (cap > 0 && now >= cap) {
        return false;
      }
      if (count.compareAndSet(now, now + 1)) {
        return true;
      }
    }
  }

  void opened(String database, int delta) {
    count(database).addAndGet(delta);
    if (delta < 0 && config.pool().maxDbConnections() > 0) {
      // Room under the database cap may serve a client waiting in another role's pool.
      maintenanceLoop.execute(() -> select(database).forEach(ServerPool::serveWaiters));
    }
  }

  /**
   * The database cap stops {@code needy} from opening a connection: close an idle one of another
   * pool of the same database, as PgBouncer does, so that the room goes where clients wait.
   */
  void makeRoom(ServerPool needy) {
    for (ServerPool other : select(needy.key().database())) {
      if (other != needy && other.closeOneIdle()) {
        return;
      }
    }
  }

  private AtomicInteger count(String database) {
    return perDatabase.computeIfAbsent(database, d -> new AtomicInteger());
  }

  public List<ServerPool.Stats> stats() {
    List<ServerPool.Stats> all = new ArrayList<>();
    pools.values().forEach(p -> all.add(p.stats()));
    return all;
  }

  @Override
  public void close() {
    maintenance.cancel(false);
  }
}

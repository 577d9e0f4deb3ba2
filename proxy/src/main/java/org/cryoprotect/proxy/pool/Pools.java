package org.cryoprotect.proxy.pool;

import io.netty.channel.EventLoop;
import io.netty.util.concurrent.ScheduledFuture;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import org.cryoprotect.proxy.backend.ServerConnector;
import org.cryoprotect.proxy.config.ProxyConfig;
import org.cryoprotect.proxy.config.ProxyConfig.Database;

/**
 * Every server pool of the proxy, created on first use, plus the per-database connection cap and a
 * once-a-second maintenance pass (lifetime, idle timeout, min idle).
 */
public final class Pools implements AutoCloseable {
  private volatile ProxyConfig config;
  private final ServerConnector connector;
  private final ConcurrentHashMap<PoolKey, ServerPool> pools = new ConcurrentHashMap<>();
  private final ConcurrentHashMap<String, AtomicInteger> perDatabase = new ConcurrentHashMap<>();
  private final PreparedRegistry prepared = new PreparedRegistry();
  private final ScheduledFuture<?> maintenance;
  private final EventLoop maintenanceLoop;
  private static final String ALL = "";
  private final java.util.Set<String> paused = new java.util.HashSet<>();

  public Pools(ProxyConfig config, ServerConnector connector, EventLoop maintenanceLoop) {
    this.config = config;
    this.connector = connector;
    this.maintenanceLoop = maintenanceLoop;
    this.maintenance =
        maintenanceLoop.scheduleWithFixedDelay(
            () -> pools.values().forEach(p -> p.maintain(maintenanceLoop)), 1, 1, TimeUnit.SECONDS);
  }

  public ProxyConfig config() {
    return config;
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

  ServerConnector connector() {
    return connector;
  }

  public PreparedRegistry prepared() {
    return prepared;
  }

  public ServerPool pool(Database database, String role) {
    PoolKey key = new PoolKey(database.primary(), database.name(), role);
    return pools.computeIfAbsent(
        key,
        k -> {
          ServerPool pool = new ServerPool(k, this, config.poolSize(database));
          if (paused.contains(k.database()) || paused.contains(ALL)) {
            pool.pause();
          }
          return pool;
        });
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

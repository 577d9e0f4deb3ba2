package org.cryoprotect.proxy.frontend;

import java.time.Duration;
import java.time.Instant;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.config.ProxyConfig.ReadYourWrites;
import org.cryoprotect.proxy.health.NodeHealth;
import org.cryoprotect.proxy.routing.Router;

/**
 * One client's read-your-writes state (DESIGN §5, README "Routing and failures"): the WAL position
 * after its last write, which a replica must have replayed before the client reads from it, and the
 * wait for such a replica while the writer is down. Lives on the client's event loop.
 */
final class OwnWrites {
  private final Router router;
  private final Database database;
  private final boolean enabled;
  private long writeLsn; // Long.MAX_VALUE: unknown since writeLsnLostAt
  private Instant writeLsnLostAt;
  private long mustSee; // of the read being routed now
  private long waitSince; // 0: not waiting for a replica to catch up

  OwnWrites(Router router, Database database) {
    this.router = router;
    this.database = database;
    this.enabled = database.routing().readYourWrites() == ReadYourWrites.SESSION;
  }

  /** Whether the database asks for read-your-writes ({@code session}). */
  boolean enabled() {
    return enabled;
  }

  /** The replica for the read being routed, or null (the writer); remembers what it must see. */
  Endpoint replica(Endpoint avoid) {
    mustSee = 0;
    if (enabled) {
      if (writeLsn == Long.MAX_VALUE) {
        writeLsn = router.writerLsnAfter(database, writeLsnLostAt);
      }
      mustSee = writeLsn;
    }
    return router.reader(database, mustSee, avoid);
  }

  /** The unit being routed is not a read: nothing to wait for. */
  void notARead() {
    mustSee = 0;
  }

  /** {@code pg_current_wal_insert_lsn()} after the client's write. */
  void wrote(String insertLsn) {
    writeLsn = NodeHealth.recordEnd(NodeHealth.parseLsn(insertLsn));
  }

  /**
   * The WAL position after the client's last write could not be learned: its reads stay on the
   * writer until a health probe that began after now reports the writer's position, which covers
   * that write.
   */
  void writeLost() {
    writeLsn = Long.MAX_VALUE;
    writeLsnLostAt = Instant.now();
  }

  /**
   * Whether the read being routed should look for a replica again shortly instead of going to the
   * writer: the writer is down, a replica is up, and only not yet known to have the client's last
   * commit (the probes run every {@code health.interval}; replicas usually have it within
   * milliseconds). True until {@code waitTimeout} has passed since the first look.
   */
  boolean waitForReplica(boolean writerDown, Endpoint avoid, Duration waitTimeout) {
    if (mustSee == 0 || !writerDown || router.reader(database, 0, avoid) == null) {
      return false;
    }
    long now = System.nanoTime();
    if (waitSince == 0) {
      waitSince = now;
      return true;
    }
    return now - waitSince <= waitTimeout.toNanos(); // past it: the writer's error it is
  }

  /** The read found its node (or gave up): the next wait starts afresh. */
  void routed() {
    waitSince = 0;
  }
}

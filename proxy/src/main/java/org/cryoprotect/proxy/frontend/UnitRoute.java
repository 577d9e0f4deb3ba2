package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import java.time.Duration;
import java.util.Map;
import org.cryoprotect.proxy.config.ProxyConfig.Database;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.PreparedRegistry;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.routing.NodeGuard;
import org.cryoprotect.proxy.routing.Router;

/**
 * Where a client's current unit (a transaction, or a batch up to its Sync) runs, and what the
 * session learns on the way (DESIGN §4 and §5): whether it reads only, the node chosen, the node
 * that failed it, whether it must go to the writer after a replica refused or failed it, how often
 * it was replayed, and the WAL position a write leaves for the client's later reads. One per client
 * session, confined to its event loop.
 */
final class UnitRoute {
  static final int MAX_REPLAYS = 2;

  private final Router router;
  private final Database database;
  private final boolean routing; // reads may go to replicas (transaction mode, replicas, enabled)
  private final OwnWrites ownWrites; // what the client's reads must see of its own writes
  private UnitIntent intent = UnitIntent.WRITE; // of the transaction on the server now
  private String route = ProxyMetrics.PRIMARY;
  private NodeGuard guard; // of the server's node while the client has it
  private int replays; // of the current unit
  private boolean writerOnly; // a replica failed the unit (25006, no connection): the writer
  private boolean misrouted; // the replica answered 25006: replay on the writer at the unit's end
  private Endpoint avoid; // the node that just failed the unit
  private boolean lsnNeeded; // a write transaction ended: learn the WAL position after it

  UnitRoute(Router router, Database database, boolean transactionMode) {
    this.router = router;
    this.database = database;
    this.routing = transactionMode && Router.routes(database);
    this.ownWrites = new OwnWrites(router, database);
  }

  /** Whether a node can be chosen for {@code unit} now (a read waits for its whole first batch). */
  boolean canChoose(Iterable<ByteBuf> unit) {
    return !routing || UnitIntent.readable(unit);
  }

  /**
   * The node for {@code unit}: a replica for a read when one qualifies, else the writer; null when
   * the read must see the client's last write, the writer is down, and a replica may catch up (look
   * again shortly). {@code judge}: the unit may be judged at all (no pin, no transaction open,
   * logged in).
   */
  Endpoint choose(
      Iterable<ByteBuf> unit,
      Map<String, PreparedRegistry.Entry> byName,
      boolean judge,
      Duration waitTimeout) {
    Endpoint writer = router.writer(database);
    Endpoint node = writer;
    intent = UnitIntent.WRITE;
    ownWrites.notARead();
    if (routing && judge) {
      intent = UnitIntent.of(unit, byName, true, router.volatility(database));
      if (intent != UnitIntent.WRITE && !writerOnly) {
        Endpoint replica = ownWrites.replica(avoid);
        if (replica != null) {
          node = replica;
        } else if (waitsForReplica(!router.guard(writer).admits(), waitTimeout)) {
          return null;
        }
      }
    }
    ownWrites.routed();
    route = node.equals(writer) ? ProxyMetrics.PRIMARY : ProxyMetrics.REPLICA;
    return node;
  }

  /** Read-your-writes while the writer is down: look for a replica again instead of failing. */
  boolean waitsForReplica(boolean writerDown, Duration waitTimeout) {
    return ownWrites.waitForReplica(writerDown, avoid, waitTimeout);
  }

  /** Whether the node {@link #choose} chose is the writer. */
  boolean onWriter() {
    return ProxyMetrics.PRIMARY.equals(route);
  }

  /** The route label of the unit's node, for metrics. */
  String route() {
    return route;
  }

  boolean isRead() {
    return intent != UnitIntent.WRITE;
  }

  /** No replica connection could be had: true when the read should try the writer instead. */
  boolean fallBackToWriter() {
    if (!ProxyMetrics.REPLICA.equals(route) || writerOnly) {
      return false;
    }
    writerOnly = true;
    return true;
  }

  /** A server connection to {@code node} is the client's. */
  void started(Endpoint node) {
    guard = router.guard(node);
    guard.started();
  }

  /** A client query ended well on the node at {@code nanoTime}. */
  void served(long nanoTime) {
    if (guard != null) {
      guard.served(nanoTime); // evidence the node works, whatever its probes say
    }
  }

  /** The server connection is no longer the client's: the node has one transaction less. */
  void left() {
    if (guard != null) {
      guard.finished();
      guard = null;
    }
  }

  /**
   * The server answered {@code sqlState} to the unit: true when it is a replica's 25006 to a unit
   * judged a read, which then runs again on the writer at its end.
   */
  boolean misjudged(String sqlState) {
    if (intent == UnitIntent.READ
        && ProxyMetrics.REPLICA.equals(route)
        && SqlState.READ_ONLY_SQL_TRANSACTION.code().equals(sqlState)) {
      misrouted = true;
      return true;
    }
    return false;
  }

  /** At the unit's end: true when a misjudged read is to run again, on the writer. */
  boolean rerouteToWriter() {
    if (!misrouted || replays >= MAX_REPLAYS) {
      return false;
    }
    misrouted = false;
    writerOnly = true;
    return true;
  }

  /** The server connection died under a replayable unit: true when it may run again elsewhere. */
  boolean replayAvoiding(Endpoint lost) {
    if (replays >= MAX_REPLAYS) {
      return false;
    }
    avoid = lost;
    return true;
  }

  /** The unit runs again; returns the node it avoids (may be null), for the log. */
  Endpoint replayed() {
    replays++;
    return avoid;
  }

  /** No server connection could be had for the unit: it failed, the next one starts afresh. */
  void failed() {
    writerOnly = false;
    misrouted = false;
    avoid = null;
  }

  /** The unit ended on its server. */
  void ended() {
    replays = 0;
    failed();
  }

  /** A client message of {@code type} went to the server. */
  void sent(byte type) {
    if (intent == UnitIntent.WRITE && (type == 'Q' || type == 'S' || type == 'F')) {
      // Whatever reaches the server under a write, on this connection however it was borrowed.
      lsnNeeded = routing && ownWrites.enabled();
    }
  }

  /** Whether to ask the server for its WAL position now that a write ended; asking clears it. */
  boolean takeLsnNeeded() {
    boolean needed = lsnNeeded;
    lsnNeeded = false;
    return needed;
  }

  boolean lsnNeeded() {
    return lsnNeeded;
  }

  /** The WAL position the writer reported after the client's write. */
  void wrote(String insertLsn) {
    ownWrites.wrote(insertLsn);
  }

  /** The WAL position query failed: the position after the client's write is not known. */
  void positionUnknown() {
    ownWrites.writeLost();
  }

  /**
   * The server connection broke; {@code asked}: the position query was in flight. A write may have
   * committed: its position is not known.
   */
  void connectionLost(boolean asked) {
    if (asked || lsnNeeded) {
      lsnNeeded = false;
      ownWrites.writeLost();
    }
  }
}

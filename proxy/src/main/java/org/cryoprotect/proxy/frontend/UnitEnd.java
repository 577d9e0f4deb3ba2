package org.cryoprotect.proxy.frontend;

import java.util.Map;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The end of a unit: the server said ReadyForQuery and owes nothing more. What follows depends on
 * the session: a read that must run again on the writer, the session-state probe and WAL position
 * after opaque units and writes, the connection given back (transaction mode, nothing pinned), or
 * the reset after a client that left. Release only ever happens here, at ReadyForQuery 'I' with the
 * reply queue empty.
 *
 * <p>Confined to the client's event loop.
 */
final class UnitEnd {
  private static final Logger log = LoggerFactory.getLogger(UnitEnd.class);

  private static final String LSN_SQL = "SELECT pg_current_wal_insert_lsn()::text";

  private final ClientSession s;

  UnitEnd(ClientSession session) {
    this.s = session;
  }

  /** Nothing is outstanding and the server said ReadyForQuery: what next for the connection? */
  void readyPoint() {
    s.clock.active(); // idle from its last answer on
    if (s.state == ClientState.CLOSED) {
      cleanUpAfterClient();
      return;
    }
    if (s.preparing) {
      s.checkout.ready();
      return;
    }
    if (s.window.isOpen()) {
      if (s.txStatus == ReadyForQuery.IDLE && s.unit.rerouteToWriter()) {
        releaseServer();
        replay(ProxyMetrics.REPLAY_READ_ONLY);
        return;
      }
      s.commitWindow();
    }
    s.ctx.flush();
    s.unit.ended();
    if (s.txStatus != ReadyForQuery.IDLE || s.midBatch || s.copyIn) {
      if (!s.backlog.isEmpty()) {
        s.sendBacklog(); // the rest of a read-only transaction, on the same server
      }
      return;
    }
    if (s.transactionMode && (s.settings.captureNeeded() || s.unit.lsnNeeded())) {
      if (s.settings.captureNeeded()) {
        s.settings.captureStarted();
        s.pins.probeSent();
        s.writeOwn(Kind.SNAPSHOT, SessionSettings.SNAPSHOT_SQL);
      }
      if (s.unit.takeLsnNeeded()) {
        // After the client's commit, off its path: its ReadyForQuery is already on the way.
        s.writeOwn(Kind.LSN, LSN_SQL);
      }
      s.server.channel().flush();
      return;
    }
    if (s.transactionMode && s.pins.isEmpty()) {
      releaseServer();
      if (!s.backlog.isEmpty() && s.unit.canChoose(s.backlog)) {
        s.checkout.acquire(); // the next unit, routed afresh (or when the rest of it arrives)
      }
    } else if (!s.backlog.isEmpty()) {
      s.sendBacklog();
    }
  }

  /**
   * Runs the unit again from the client's own messages (DESIGN §4): nothing of its reply reached
   * the client, and it reads only, so running it twice cannot change anything.
   */
  void replay(String reason) {
    Endpoint avoided = s.unit.replayed();
    s.frontend.metrics().replay(reason);
    log.debug("client {}: replaying a read ({}), avoiding {}", s.client.address(), reason, avoided);
    s.window.rewind(s.backlog);
    s.pending.clear();
    s.conversationOver(ReadyForQuery.IDLE);
    s.checkout.acquire();
  }

  /** The client left: roll back, reset what cannot be kept, and give the connection back. */
  private void cleanUpAfterClient() {
    if (s.settings.abandon()) {
      s.server.applied(null); // changed settings never captured: applied afresh before reuse
    }
    if (s.txStatus != ReadyForQuery.IDLE) {
      inject("ROLLBACK");
      return;
    }
    if (!s.resetNeeded && (!s.transactionMode || !s.pins.isEmpty())) {
      s.resetNeeded = true;
      s.pins.clear();
      inject("DISCARD ALL");
      s.server.forgetAllPrepared();
      s.server.applied(Map.of());
      return;
    }
    releaseServer();
  }

  private void inject(String sql) {
    s.server.testing(); // the reset after a client left: sv_tested
    s.writeOwn(Kind.INJECTED, sql);
    s.server.channel().flush();
  }

  void releaseServer() {
    if (s.drainDeadline != null) {
      s.drainDeadline.cancel(false);
      s.drainDeadline = null;
    }
    PooledServer held = s.server;
    s.server = null;
    s.leftNode();
    s.moveTo(ClientState.IDLE);
    s.client.server(null);
    s.resetNeeded = false;
    held.pool().release(held);
    if (s.state != ClientState.CLOSED) {
      s.ctx.channel().config().setAutoRead(true); // the server may have paused it (backpressure)
    }
  }
}

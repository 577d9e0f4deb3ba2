package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import org.cryoprotect.proxy.config.ProxyConfig.Endpoint;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.metrics.ProxyMetrics;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.cryoprotect.proxy.protocol.frontend.FrontendMessageTypes;
import org.cryoprotect.proxy.sql.SqlScan;

/**
 * What a lost server connection means for the client session that held it: nothing when the client
 * had nothing on it, another connection when only the proxy's own queries ran, a replay when the
 * unit was a read nobody saw the answer of, and otherwise the failure PostgreSQL itself would
 * report ({@link #failUnit}).
 *
 * <p>Confined to the client's event loop.
 */
final class ServerLoss {
  private final ClientSession s;

  ServerLoss(ClientSession session) {
    this.s = session;
  }

  /** The server connection {@code lost} closed; nothing to do unless the session still holds it. */
  void closed(PooledServer lost) {
    if (lost != s.server) {
      return; // one this session already gave back (or never got)
    }
    if (s.reads != null) {
      s.reads.lost();
    }
    s.server = null;
    s.leftNode();
    s.moveTo(ClientState.IDLE);
    s.client.server(null);
    lost.pool().discard(lost);
    s.router.lost(lost.node());
    if (s.state == ClientState.CLOSED) {
      s.pending.clear();
      s.lossError = null;
      return;
    }
    s.ctx.channel().config().setAutoRead(true);
    if (s.preparing && ++s.prepareAttempts < Checkout.MAX_PREPARE_ATTEMPTS) {
      s.lossError = null;
      // Nothing of the client's was sent yet: another connection will do.
      s.pending.clear();
      s.preparing = false;
      s.checkout.acquire();
      return;
    }
    if (!s.transactionMode) {
      s.pending.clear();
      s.lossError = null;
      s.client.fatal(
          SqlState.CONNECTION_FAILURE, "server connection to " + lost.node() + " was lost");
      return;
    }
    if (s.window.isOpen() && s.unit.replayAvoiding(lost.node())) {
      s.pending.clear();
      s.lossError = null;
      s.unitEnd.replay(ProxyMetrics.REPLAY_CONNECTION_LOST);
      return;
    }
    failUnit(lost.node());
  }

  /**
   * The server connection broke under work that may not run again (it may write, or part of its
   * reply already reached the client). What the client is told is what the loss means for its
   * transaction, never less:
   *
   * <ul>
   *   <li>a COMMIT (or PREPARE TRANSACTION) was in flight, or a write in an implicit transaction:
   *       the outcome is unknown, 08007, and the session is idle after it;
   *   <li>a transaction was open (the last ReadyForQuery said 'T' or 'E', or a BEGIN was sent): it
   *       failed, as PostgreSQL fails a transaction: the error, ReadyForQuery 'E', and 25P02 for
   *       everything until the client ends it ({@link FailedTransaction}). Its later statements
   *       never run outside it;
   *   <li>otherwise (a read): the error (08006, or the server's FATAL as an ERROR), idle after.
   * </ul>
   *
   * The client keeps its session: only between transactions is a lost server connection invisible.
   */
  private void failUnit(Endpoint node) {
    s.window.commit(s.ctx, false); // a partial reply of a unit that failed is not delivered
    s.unit.connectionLost(s.pending.awaits(Kind.LSN));
    boolean owed = s.pending.owesClient();
    ErrorResponse lost = s.lossError != null ? s.lossError : ClientErrors.connectionLost(node);
    byte after = ReadyForQuery.IDLE;
    if ((s.controlSent & SqlScan.COMMITS) != 0 && owed) {
      lost = ClientErrors.resolutionUnknown(node);
    } else if (s.txStatus != ReadyForQuery.IDLE || (s.controlSent & SqlScan.BEGINS) != 0) {
      after = FailedTransaction.FAILED;
      s.failed = new FailedTransaction(owed ? null : lost);
    } else if (owed && !s.unit.isRead()) {
      lost = ClientErrors.resolutionUnknown(node);
    }
    s.lossError = null;
    s.txStatus = after; // what the answers below and a skipped batch's ReadyForQuery say
    if (s.pending.answerLost(s.ctx, lost, s.errorSent, s.midBatch, after)) {
      s.skipUntilSync = true; // the rest of the batch is skipped, as the server would
      dropBacklogUntilSync();
    }
    if (owed) {
      s.frontend.metrics().error(lost.sqlState().substring(0, 2), ProxyMetrics.PROXY);
    }
    s.conversationOver(after);
    s.pins.clear(); // the state they protected died with the connection
    if (s.failed != null) {
      ByteBuf frame;
      while (!s.skipUntilSync && s.failed != null && (frame = s.backlog.poll()) != null) {
        s.answerFailed(frame);
      }
    }
    s.ctx.flush();
    if (!s.backlog.isEmpty() && !s.skipUntilSync) {
      s.checkout.acquire();
    }
  }

  /** The client's batch failed before its Sync: drop its messages up to the Sync and answer it. */
  private void dropBacklogUntilSync() {
    ByteBuf frame;
    while ((frame = s.backlog.poll()) != null) {
      byte type = Frames.type(frame);
      frame.release();
      if (type == FrontendMessageTypes.SYNC) {
        s.skipUntilSync = false;
        s.ctx.write(new ReadyForQuery(s.txStatus).encode(s.ctx.alloc()));
        return;
      }
    }
  }
}

package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.util.Set;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.frontend.Bind;
import org.cryoprotect.proxy.protocol.frontend.FrontendMessageTypes;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.protocol.frontend.Query;
import org.cryoprotect.proxy.sql.SqlScan;
import org.cryoprotect.proxy.sql.SqlScan.Pin;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The client's frames on their way to the server connection the session holds: what each one means
 * for the reply queue, the batch and the transaction, prepared statements renamed on the way
 * ({@link StatementRenamer}, for which this is the link to the server), statements audited and
 * reads noted for the result cache.
 *
 * <p>Confined to the client's event loop.
 */
final class ClientFrames implements StatementRenamer.Link {
  private static final Logger log = LoggerFactory.getLogger(ClientFrames.class);

  private final ClientSession s;

  ClientFrames(ClientSession session) {
    this.s = session;
  }

  /** One client frame to the linked server, rewritten where prepared statements need it. */
  void send(ByteBuf frame) {
    byte type = Frames.type(frame);
    if (s.serverSkipping) {
      if (type != FrontendMessageTypes.SYNC) {
        frame.release(); // the server would read and discard it, answering nothing
        return;
      }
      s.serverSkipping = false;
    }
    if (s.window.isOpen() && !s.window.request(frame)) {
      s.commitWindow(); // too big to replay: it streams
    }
    s.stats.received(frame.readableBytes());
    s.unit.sent(type);
    switch (type) {
      case 'Q' -> {
        if (s.reads != null) {
          s.reads.sentQuery(frame);
        }
        if (SqlScan.isPlainQuery(frame)) {
          int from = frame.readerIndex() + Frames.HEADER;
          noteControl(SqlScan.transactionControl(frame, from, frame.writerIndex() - 1));
        } else {
          String sql = Query.textOrNull(frame); // malformed: the server answers for itself
          if (sql != null) {
            noteEffects(SqlScan.scan(sql));
            noteControl(SqlScan.transactionControl(sql));
          }
        }
        if (s.transactionMode) {
          s.statements.queried(s.server); // a simple Query drops the unnamed statement
        }
        if (s.midBatch) {
          // A Query between an Execute and its Sync: once the Sync comes, a PostgreSQL 17+ backend
          // is left in an implicit block with no transaction command, and fails its next statement
          // (XX000 "StartTransactionCommand: unexpected state STARTED"). Closed after this client.
          s.server.markBroken();
        }
        Pending query = s.pending.add(Kind.QUERY, true);
        if (s.trail != null) {
          audited(query, s.trail.query(frame), null);
        }
        write(frame);
      }
      case 'P' -> {
        s.midBatch = true;
        if (s.trail != null) {
          s.trail.parsed(frame);
        }
        s.statements.parse(frame, this);
      }
      case 'B' -> {
        s.midBatch = true;
        if (s.trail != null) {
          s.trail.bound(frame);
        }
        if (s.reads != null) {
          Parse made = s.statements.statement(Bind.statement(frame));
          s.reads.sent(made == null ? null : made.query());
        }
        s.statements.bind(frame, this);
      }
      case 'D' -> {
        s.midBatch = true;
        s.statements.describe(frame, this);
      }
      case 'E' -> extended(frame, Kind.EXECUTE);
      case 'C' -> {
        s.midBatch = true;
        s.statements.close(frame, this);
      }
      case 'S' -> {
        s.midBatch = false;
        s.pending.add(Kind.SYNC, true);
        write(frame);
      }
      case 'F' -> {
        s.pending.add(Kind.FUNCTION, true);
        write(frame);
      }
      case 'c', 'f' -> {
        s.copyIn = false;
        write(frame);
      }
      default -> write(frame); // Flush, CopyData
    }
  }

  private void extended(ByteBuf frame, Kind kind) {
    s.midBatch = true;
    Pending execute = s.pending.add(kind, true);
    if (s.trail != null && kind == Kind.EXECUTE) {
      AuditTrail.Portal portal = s.trail.executed(frame);
      audited(execute, portal.sql(), portal.parameters());
    }
    write(frame);
  }

  private static void audited(Pending p, String sql, String parameters) {
    p.sql = sql;
    p.parameters = parameters;
    p.sentNanos = System.nanoTime();
  }

  @Override
  public PooledServer server() {
    return s.server;
  }

  @Override
  public ByteBufAllocator alloc() {
    return s.ctx.alloc();
  }

  @Override
  public void expect(Pending reply) {
    s.pending.add(reply);
  }

  @Override
  public void local(Pending reply) {
    s.pending.add(reply);
    s.answerLocally();
  }

  @Override
  public void noteEffects(SqlScan.Effects effects) {
    if (effects.isNone()) {
      return;
    }
    if (effects.changesSession()) {
      s.settings.mayHaveChanged();
    }
    Set<Pin> added = s.pins.noted(effects.pins(), effects.releases());
    if (!added.isEmpty()) {
      log.debug("client {} pinned to {} for {}", s.client.address(), s.server, added);
    }
  }

  @Override
  public void noteControl(int bits) {
    s.controlSent |= bits;
  }

  @Override
  public void write(ByteBuf frame) {
    s.write(frame);
  }

  /** The server fails the batch here (34000, {@link Query#failBatch}); the client hears why. */
  @Override
  public void refuse(ErrorResponse error) {
    Pending failed = s.pending.add(Kind.EXECUTE, true);
    failed.error = error;
    s.write(Query.failBatch(s.ctx.alloc()));
  }
}

package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import java.util.HashSet;
import java.util.Set;
import org.cryoprotect.proxy.pool.PreparedRegistry;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse.Severity;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.cryoprotect.proxy.protocol.frontend.Bind;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.protocol.frontend.Query;
import org.cryoprotect.proxy.protocol.frontend.Target;
import org.cryoprotect.proxy.sql.SqlScan;

/**
 * A client whose transaction died with its server connection (transaction mode). The proxy answers
 * it exactly as PostgreSQL answers a client in a failed transaction block: every statement gets
 * 25P02 and ReadyForQuery 'E', until the client ends the transaction; COMMIT, END and ROLLBACK are
 * answered {@code ROLLBACK} and ReadyForQuery 'I'. Without this a transaction could be applied in
 * part: the statements after the loss would run in autocommit on another server connection.
 *
 * <p>In the extended protocol a Parse, Bind, Describe or Execute of anything but a statement that
 * ends the transaction fails the same way, and the rest of the batch is skipped to its Sync, as the
 * server skips it. One object per failure; confined to the client's event loop.
 */
final class FailedTransaction {
  static final byte FAILED = 'E';

  private ErrorResponse first; // the loss itself, told at the next statement when nothing waited
  private boolean skipping; // an error in the extended protocol: drop up to the Sync
  private boolean ended; // a statement that ends the transaction ran: 'I' at the Sync
  private final Set<String> endingStatements = new HashSet<>();
  private final Set<String> endingPortals = new HashSet<>();

  /** {@code first}: the error the next statement hears instead of 25P02, or null. */
  FailedTransaction(ErrorResponse first) {
    this.first = first;
  }

  /**
   * Answers one client message, releasing it. Returns true once the transaction is over: the
   * session goes on as usual from the next message.
   */
  boolean answer(ChannelHandlerContext ctx, ByteBuf frame, StatementRenamer statements) {
    try {
      return answer(ctx, Frames.type(frame), frame, statements);
    } finally {
      frame.release();
    }
  }

  private boolean answer(
      ChannelHandlerContext ctx, byte type, ByteBuf frame, StatementRenamer statements) {
    if (type == 'S') {
      skipping = false;
      ready(ctx, ended ? ReadyForQuery.IDLE : FAILED);
      return ended;
    }
    if (type == 'H') {
      ctx.flush();
      return false;
    }
    if (skipping) {
      return false;
    }
    switch (type) {
      case 'Q' -> {
        String sql = Query.text(frame);
        if (sql.isBlank()) {
          ctx.write(Query.empty(ctx.alloc(), 'I')); // EmptyQueryResponse
          ready(ctx, FAILED);
          return false;
        }
        if (ends(SqlScan.singleStatementControl(sql))) {
          commandComplete(ctx);
          ready(ctx, ReadyForQuery.IDLE);
          return true;
        }
        error(ctx);
        ready(ctx, FAILED);
      }
      case 'P' -> {
        Parse parse = Parse.decode(Frames.body(frame));
        if (ends(SqlScan.singleStatementControl(parse.query()))) {
          endingStatements.add(parse.name());
          ctx.write(Query.empty(ctx.alloc(), '1')); // ParseComplete
        } else {
          endingStatements.remove(parse.name());
          fail(ctx);
        }
      }
      case 'B' -> {
        String statement = Bind.statement(frame);
        if (endsStatement(statement, statements)) {
          endingPortals.add(portal(frame));
          ctx.write(Query.empty(ctx.alloc(), '2')); // BindComplete
        } else {
          fail(ctx);
        }
      }
      case 'D' -> {
        Target target = Target.decode('D', Frames.body(frame));
        if (target.isStatement() && endsStatement(target.name(), statements)) {
          ctx.write(parameterDescriptionNone(ctx));
          ctx.write(Query.empty(ctx.alloc(), 'n')); // NoData
        } else if (!target.isStatement() && endingPortals.contains(target.name())) {
          ctx.write(Query.empty(ctx.alloc(), 'n'));
        } else {
          fail(ctx);
        }
      }
      case 'E' -> {
        if (endingPortals.contains(Frames.readCString(Frames.body(frame)))) {
          commandComplete(ctx);
          ended = true;
        } else {
          fail(ctx);
        }
      }
      case 'C' -> {
        Target target = Target.decode('C', Frames.body(frame));
        if (target.isStatement()) {
          endingStatements.remove(target.name());
          if (!target.name().isEmpty()) {
            statements.byName().remove(target.name());
          }
        } else {
          endingPortals.remove(target.name());
        }
        ctx.write(Query.empty(ctx.alloc(), '3')); // CloseComplete
      }
      case 'F' -> {
        error(ctx);
        ready(ctx, FAILED);
      }
      default -> {} // COPY messages with no COPY running: the server ignores them too
    }
    return false;
  }

  private static boolean ends(int control) {
    return control > 0 && (control & (SqlScan.COMMITS | SqlScan.ROLLS_BACK)) != 0;
  }

  private boolean endsStatement(String name, StatementRenamer statements) {
    if (endingStatements.contains(name)) {
      return true;
    }
    PreparedRegistry.Entry entry = name.isEmpty() ? null : statements.byName().get(name);
    return entry != null && ends(SqlScan.singleStatementControl(entry.parse().query()));
  }

  private static String portal(ByteBuf frame) {
    return Frames.readCString(Frames.body(frame));
  }

  private void fail(ChannelHandlerContext ctx) {
    error(ctx);
    skipping = true;
  }

  private void error(ChannelHandlerContext ctx) {
    ErrorResponse error = first;
    first = null;
    if (error == null) {
      error =
          ErrorResponse.of(
              Severity.ERROR,
              SqlState.IN_FAILED_SQL_TRANSACTION,
              "current transaction is aborted, commands ignored until end of transaction block"
                  + " (its server connection was lost)");
    }
    ctx.write(error.encode(ctx.alloc()));
  }

  /** PostgreSQL's answer to COMMIT or ROLLBACK of a failed transaction. */
  private static void commandComplete(ChannelHandlerContext ctx) {
    ByteBuf buf = ctx.alloc().buffer(16);
    int at = Frames.begin(buf, 'C');
    Frames.writeCString(buf, "ROLLBACK");
    ctx.write(Frames.finish(buf, at));
  }

  private static ByteBuf parameterDescriptionNone(ChannelHandlerContext ctx) {
    ByteBuf buf = ctx.alloc().buffer(7);
    int at = Frames.begin(buf, 't');
    buf.writeShort(0);
    return Frames.finish(buf, at);
  }

  private static void ready(ChannelHandlerContext ctx, byte status) {
    ctx.write(new ReadyForQuery(status).encode(ctx.alloc()));
  }
}

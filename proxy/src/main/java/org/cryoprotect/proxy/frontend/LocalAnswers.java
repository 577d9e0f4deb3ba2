package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import java.util.ArrayDeque;
import java.util.Map;
import org.cryoprotect.proxy.pool.PreparedRegistry;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.protocol.frontend.Query;
import org.cryoprotect.proxy.protocol.frontend.Target;

/** Replies a client session gives with no server connection: what a server would have said. */
final class LocalAnswers {
  private LocalAnswers() {}

  /**
   * Answers Parse of a statement a server already accepted, Close of a statement, Sync and Flush;
   * false (frame untouched) for anything that needs a server. pgbench and pgJDBC prepare and close
   * statements in separate round trips: this keeps them from borrowing a server connection just to
   * hear "ok". The replies are written, not flushed.
   */
  static boolean withoutServer(
      ChannelHandlerContext ctx, ByteBuf frame, StatementRenamer renamer, byte txStatus) {
    Map<String, PreparedRegistry.Entry> statements = renamer.byName();
    switch (Frames.type(frame)) {
      case 'P' -> {
        if (frame.readableBytes() <= Frames.HEADER
            || frame.getByte(frame.readerIndex() + Frames.HEADER) == 0) {
          return false; // the unnamed statement (or no body): not decoded twice per message
        }
        Parse parse = Parse.decode(Frames.body(frame));
        if (statements.containsKey(parse.name())) {
          return false; // 42P05 from the server, with the batch skipped as it skips it
        }
        PreparedRegistry.Entry entry = renamer.register(parse);
        if (!entry.verified()) {
          return false;
        }
        frame.release();
        statements.put(parse.name(), entry);
        ctx.write(Query.empty(ctx.alloc(), '1'));
      }
      case 'C' -> {
        Target target = Target.decode('C', Frames.body(frame));
        if (!target.isStatement() || target.name().isEmpty()) {
          return false;
        }
        frame.release();
        statements.remove(target.name());
        ctx.write(Query.empty(ctx.alloc(), '3'));
      }
      case 'S' -> {
        frame.release();
        ctx.write(new ReadyForQuery(txStatus).encode(ctx.alloc()));
      }
      case 'H' -> {
        frame.release();
        ctx.flush();
      }
      default -> {
        return false;
      }
    }
    return true;
  }

  /**
   * After an error was written for a batch that got no server connection: drops the batch and
   * writes the ReadyForQuery each of its Query, Sync and FunctionCall messages is owed. Returns
   * true when the batch ended without a Sync, so frames up to the next Sync must be skipped.
   */
  static boolean failBacklog(
      ChannelHandlerContext ctx, ArrayDeque<ByteBuf> backlog, byte txStatus) {
    int readies = 0;
    boolean unsynced = false;
    ByteBuf frame;
    while ((frame = backlog.poll()) != null) {
      byte type = Frames.type(frame);
      if (type == 'Q' || type == 'S' || type == 'F') {
        readies++;
        unsynced = false;
      } else if (type != 'H') {
        unsynced = true;
      }
      frame.release();
    }
    for (int i = 0; i < readies; i++) {
      ctx.write(new ReadyForQuery(txStatus).encode(ctx.alloc()));
    }
    return unsynced;
  }
}

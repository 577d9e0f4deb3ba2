package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.frontend.Parse;
import org.cryoprotect.proxy.sql.SqlScan;

/**
 * A client's unnamed prepared statement in transaction mode, kept as the bytes of the Parse that
 * made it so that it can be made again, unchanged, on whatever server connection the client's next
 * Bind or Describe of {@code ""} lands on.
 *
 * <p>Why: PostgreSQL keeps the unnamed statement across Sync until the next Parse of {@code ""} or
 * the next simple Query ("Extended Query" in the protocol docs), and clients rely on it: the Vert.x
 * client sends Parse+Describe+Sync, then Bind+Execute+Sync. Without this, the Bind runs whatever
 * another client last parsed on that server connection. Identity matters: a server connection
 * records the object it holds ({@link org.cryoprotect.proxy.pool.PooledServer#unnamed()}), and a
 * client's statement is "there" only when that object is the client's own.
 */
final class UnnamedStatement {
  private final byte[] body; // the Parse body: "" name, query text, parameter types
  private final int control; // SqlScan transaction-control bits of the query text

  private UnnamedStatement(byte[] body, int control) {
    this.body = body;
    this.control = control;
  }

  /**
   * The statement a framed Parse of {@code ""} makes: {@code previous} itself when the bytes are
   * the same (a client repeating its query allocates nothing), else a copy. {@code control} is
   * computed only for a new statement.
   */
  static UnnamedStatement of(ByteBuf frame, UnnamedStatement previous, Parse decoded) {
    int from = frame.readerIndex() + Frames.HEADER;
    int length = frame.writerIndex() - from;
    if (previous != null && previous.sameBytes(frame, from, length)) {
      return previous;
    }
    byte[] copy = new byte[length];
    frame.getBytes(from, copy);
    int control;
    if (decoded != null) {
      control = SqlScan.transactionControl(decoded.query());
    } else {
      int queryEnd = Parse.unnamedQueryEnd(frame);
      control = SqlScan.transactionControl(frame, from + 1, queryEnd);
    }
    return new UnnamedStatement(copy, control);
  }

  private boolean sameBytes(ByteBuf frame, int from, int length) {
    if (body.length != length) {
      return false;
    }
    for (int i = 0; i < length; i++) {
      if (body[i] != frame.getByte(from + i)) {
        return false;
      }
    }
    return true;
  }

  int control() {
    return control;
  }

  /** The Parse this statement was made by. */
  Parse decode() {
    return Parse.decode(io.netty.buffer.Unpooled.wrappedBuffer(body));
  }

  /** The Parse that makes this statement on another server connection. */
  ByteBuf encode(ByteBufAllocator alloc) {
    ByteBuf buf = alloc.buffer(Frames.HEADER + body.length);
    int at = Frames.begin(buf, Parse.TYPE);
    buf.writeBytes(body);
    return Frames.finish(buf, at);
  }
}

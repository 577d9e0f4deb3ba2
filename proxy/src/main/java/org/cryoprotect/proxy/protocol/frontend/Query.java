package org.cryoprotect.proxy.protocol.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import org.cryoprotect.proxy.protocol.Frames;

/** Simple Query ('Q') and the other body-less or tiny frontend messages the proxy injects. */
public final class Query {
  public static final char TYPE = 'Q';

  private Query() {}

  public static String text(ByteBuf frame) {
    return Frames.readCString(Frames.body(frame));
  }

  /** The text, or null when the body is not one NUL-terminated string. */
  public static String textOrNull(ByteBuf frame) {
    ByteBuf body = Frames.body(frame);
    int nul = body.indexOf(body.readerIndex(), body.writerIndex(), (byte) 0);
    return nul == body.writerIndex() - 1 ? Frames.readCString(body) : null;
  }

  public static ByteBuf encode(ByteBufAllocator alloc, String sql) {
    ByteBuf buf = alloc.buffer(Frames.HEADER + sql.length() * 2 + 1);
    int at = Frames.begin(buf, TYPE);
    Frames.writeCString(buf, sql);
    return Frames.finish(buf, at);
  }

  /**
   * Execute ('E') of a portal no client can have made: the server answers 34000 and, in the
   * extended protocol, discards everything up to the next Sync, which then rolls back the batch's
   * implicit transaction instead of committing it.
   */
  public static ByteBuf failBatch(ByteBufAllocator alloc) {
    ByteBuf buf = alloc.buffer(Frames.HEADER + 32);
    int at = Frames.begin(buf, 'E');
    Frames.writeCString(buf, "\u0001cryoproxy: the client left mid-batch");
    buf.writeInt(0);
    return Frames.finish(buf, at);
  }

  /** CopyFail ('f'): ends a COPY FROM STDIN with an error. */
  public static ByteBuf copyFail(ByteBufAllocator alloc, String reason) {
    ByteBuf buf = alloc.buffer(Frames.HEADER + reason.length() + 1);
    int at = Frames.begin(buf, 'f');
    Frames.writeCString(buf, reason);
    return Frames.finish(buf, at);
  }

  /** A message with an empty body: Sync ('S'), Flush ('H'), and the backend's completions. */
  public static ByteBuf empty(ByteBufAllocator alloc, char type) {
    ByteBuf buf = alloc.buffer(Frames.HEADER);
    buf.writeByte(type);
    buf.writeInt(4);
    return buf;
  }
}

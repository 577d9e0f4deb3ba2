package org.cryoprotect.proxy.protocol.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import org.cryoprotect.proxy.protocol.Frames;

/**
 * Bind: only the statement name matters to the proxy. Parameters and formats are copied as they are
 * when the name is rewritten.
 */
public final class Bind {
  public static final char TYPE = 'B';

  private Bind() {}

  /** The statement name of a framed Bind. */
  public static String statement(ByteBuf frame) {
    ByteBuf body = Frames.body(frame);
    Frames.readCString(body); // portal
    return Frames.readCString(body);
  }

  /** A copy of a framed Bind naming {@code statement} instead; the frame is not released. */
  public static ByteBuf withStatement(ByteBufAllocator alloc, ByteBuf frame, String statement) {
    ByteBuf body = Frames.body(frame);
    int portalStart = body.readerIndex();
    Frames.readCString(body);
    int portalEnd = body.readerIndex();
    Frames.readCString(body);
    ByteBuf buf = alloc.buffer(frame.readableBytes() + statement.length());
    int at = Frames.begin(buf, TYPE);
    buf.writeBytes(body, portalStart, portalEnd - portalStart);
    Frames.writeCString(buf, statement);
    buf.writeBytes(body, body.readerIndex(), body.readableBytes());
    return Frames.finish(buf, at);
  }
}

package org.cryoprotect.proxy.protocol.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.ProtocolException;

/**
 * The body shared by Describe ('D') and Close ('C'): 'S' for a prepared statement or 'P' for a
 * portal, and its name.
 */
public record Target(char messageType, byte kind, String name) {
  public static final char DESCRIBE = 'D';
  public static final char CLOSE = 'C';
  public static final byte STATEMENT = 'S';
  public static final byte PORTAL = 'P';

  public static Target decode(char messageType, ByteBuf body) {
    if (!body.isReadable()) {
      throw new ProtocolException("Describe/Close message is empty");
    }
    byte kind = body.readByte();
    if (kind != STATEMENT && kind != PORTAL) {
      throw new ProtocolException("Describe/Close names neither a statement nor a portal");
    }
    return new Target(messageType, kind, Frames.readCString(body));
  }

  public boolean isStatement() {
    return kind == STATEMENT;
  }

  public Target withName(String other) {
    return new Target(messageType, kind, other);
  }

  public ByteBuf encode(ByteBufAllocator alloc) {
    ByteBuf buf = alloc.buffer(Frames.HEADER + 2 + name.length());
    int at = Frames.begin(buf, messageType);
    buf.writeByte(kind);
    Frames.writeCString(buf, name);
    return Frames.finish(buf, at);
  }
}

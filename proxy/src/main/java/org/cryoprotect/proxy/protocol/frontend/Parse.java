package org.cryoprotect.proxy.protocol.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import java.util.Arrays;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.ProtocolException;

/** Parse: a statement name ("" = unnamed), its query text and the parameter type OIDs. */
public record Parse(String name, String query, int[] paramTypes) {
  public static final char TYPE = 'P';

  public static Parse decode(ByteBuf body) {
    String name = Frames.readCString(body);
    String query = Frames.readCString(body);
    if (body.readableBytes() < 2) {
      throw new ProtocolException("Parse message is truncated");
    }
    int count = body.readUnsignedShort();
    if (body.readableBytes() != count * 4) {
      throw new ProtocolException("Parse message has a wrong parameter type count");
    }
    int[] types = new int[count];
    for (int i = 0; i < count; i++) {
      types[i] = body.readInt();
    }
    return new Parse(name, query, types);
  }

  /**
   * For a well-formed Parse of the unnamed statement, the index in {@code frame} of the NUL that
   * ends its query text (the text starts two bytes after the header); otherwise -1, and {@link
   * #decode} says what is wrong. Lets the hot path look at the text without decoding it.
   */
  public static int unnamedQueryEnd(ByteBuf frame) {
    int body = frame.readerIndex() + Frames.HEADER;
    int end = frame.writerIndex();
    if (body >= end || frame.getByte(body) != 0) {
      return -1;
    }
    int nul = frame.indexOf(body + 1, end, (byte) 0);
    if (nul < 0 || end - nul - 1 < 2) {
      return -1;
    }
    int count = frame.getUnsignedShort(nul + 1);
    return end - nul - 3 == count * 4 ? nul : -1;
  }

  public ByteBuf encode(ByteBufAllocator alloc) {
    ByteBuf buf =
        alloc.buffer(Frames.HEADER + name.length() + query.length() + 4 + 4 * paramTypes.length);
    int at = Frames.begin(buf, TYPE);
    Frames.writeCString(buf, name);
    Frames.writeCString(buf, query);
    buf.writeShort(paramTypes.length);
    for (int t : paramTypes) {
      buf.writeInt(t);
    }
    return Frames.finish(buf, at);
  }

  @Override
  public boolean equals(Object o) {
    return o instanceof Parse p
        && p.name.equals(name)
        && p.query.equals(query)
        && Arrays.equals(p.paramTypes, paramTypes);
  }

  @Override
  public int hashCode() {
    return (name.hashCode() * 31 + query.hashCode()) * 31 + Arrays.hashCode(paramTypes);
  }

  @Override
  public String toString() {
    return "Parse[" + name + ", " + query + ", " + Arrays.toString(paramTypes) + "]";
  }
}

package org.cryoprotect.proxy.protocol;

import io.netty.buffer.ByteBuf;
import java.nio.charset.StandardCharsets;

/** Peeks into a framed message (type byte + int32 length + body) without copying it. */
public final class Frames {
  public static final int HEADER = 5;

  private Frames() {}

  public static byte type(ByteBuf frame) {
    return frame.getByte(frame.readerIndex());
  }

  /** The body as a slice sharing the frame's memory; not retained. */
  public static ByteBuf body(ByteBuf frame) {
    return frame.slice(frame.readerIndex() + HEADER, frame.readableBytes() - HEADER);
  }

  /**
   * Reads a NUL-terminated string and moves past the NUL; a missing NUL is a protocol violation.
   */
  public static String readCString(ByteBuf buf) {
    int end = buf.indexOf(buf.readerIndex(), buf.writerIndex(), (byte) 0);
    if (end < 0) {
      throw new ProtocolException("string is not NUL-terminated");
    }
    String s = buf.toString(buf.readerIndex(), end - buf.readerIndex(), StandardCharsets.UTF_8);
    buf.readerIndex(end + 1);
    return s;
  }

  public static void writeCString(ByteBuf buf, String s) {
    buf.writeCharSequence(s, StandardCharsets.UTF_8);
    buf.writeByte(0);
  }

  /** Starts a typed message; returns the index of the length field for {@link #finish}. */
  public static int begin(ByteBuf buf, char type) {
    buf.writeByte(type);
    int lengthIndex = buf.writerIndex();
    buf.writeInt(0);
    return lengthIndex;
  }

  public static ByteBuf finish(ByteBuf buf, int lengthIndex) {
    buf.setInt(lengthIndex, buf.writerIndex() - lengthIndex);
    return buf;
  }
}

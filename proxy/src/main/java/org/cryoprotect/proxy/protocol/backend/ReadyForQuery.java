package org.cryoprotect.proxy.protocol.backend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import org.cryoprotect.proxy.protocol.Frames;

/** Transaction status: 'I' idle, 'T' in a transaction block, 'E' in a failed transaction block. */
public record ReadyForQuery(byte status) {
  public static final char TYPE = 'Z';
  public static final byte IDLE = 'I';

  /** Reads the status from a whole framed 'Z' message without decoding anything else. */
  public static byte status(ByteBuf frame) {
    return frame.getByte(frame.readerIndex() + Frames.HEADER);
  }

  public ByteBuf encode(ByteBufAllocator alloc) {
    return writeTo(alloc.buffer(6));
  }

  /** Appends the message to {@code buf}. */
  public ByteBuf writeTo(ByteBuf buf) {
    int at = Frames.begin(buf, TYPE);
    buf.writeByte(status);
    return Frames.finish(buf, at);
  }
}

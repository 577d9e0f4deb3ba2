package org.cryoprotect.proxy.protocol.backend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.ProtocolException;

/** Protocol 3.0 key: int32 process id and int32 secret (3.2's longer keys are not negotiated). */
public record BackendKeyData(int processId, int secretKey) {
  public static final char TYPE = 'K';

  public static BackendKeyData decode(ByteBuf body) {
    if (body.readableBytes() < 8) {
      throw new ProtocolException("truncated BackendKeyData");
    }
    return new BackendKeyData(body.readInt(), body.readInt());
  }

  public ByteBuf encode(ByteBufAllocator alloc) {
    return writeTo(alloc.buffer(13));
  }

  /** Appends the message to {@code buf}. */
  public ByteBuf writeTo(ByteBuf buf) {
    int at = Frames.begin(buf, TYPE);
    buf.writeInt(processId).writeInt(secretKey);
    return Frames.finish(buf, at);
  }

  @Override
  public String toString() {
    return "BackendKeyData[processId=" + processId + "]";
  }
}

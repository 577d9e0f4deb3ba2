package org.cryoprotect.proxy.protocol.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.buffer.ByteBufAllocator;

public record CancelRequest(int processId, int secretKey) implements StartupPacket {
  public ByteBuf encode(ByteBufAllocator alloc) {
    return alloc
        .buffer(16)
        .writeInt(16)
        .writeInt(CANCEL_REQUEST_CODE)
        .writeInt(processId)
        .writeInt(secretKey);
  }

  @Override
  public String toString() {
    return "CancelRequest[processId=" + processId + "]";
  }
}

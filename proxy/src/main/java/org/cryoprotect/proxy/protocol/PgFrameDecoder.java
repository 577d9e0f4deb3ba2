package org.cryoprotect.proxy.protocol;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.ByteToMessageDecoder;
import java.util.List;

/**
 * Splits a v3 stream (after the startup phase) into whole messages: type byte + int32 length that
 * counts itself. Each message leaves as a retained slice of the cumulation buffer, header included,
 * so the relay forwards the original bytes without a copy (STYLE rule 2).
 *
 * <p>Ownership: every emitted ByteBuf is owned by the next handler, which must release or forward
 * it. A violation raises {@link ProtocolException} after which the decoder emits nothing more.
 */
public final class PgFrameDecoder extends ByteToMessageDecoder {
  private static final int HEADER = 5;

  private int maxMessageSize;
  private boolean broken;

  /** {@code maxMessageSize} bounds the body (length field minus its own 4 bytes). */
  public PgFrameDecoder(int maxMessageSize) {
    this.maxMessageSize = maxMessageSize;
  }

  /** A new bound from the next frame on, on the channel's loop (a phase change of the protocol). */
  public void maxMessageSize(int maxMessageSize) {
    this.maxMessageSize = maxMessageSize;
  }

  @Override
  protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
    if (broken) {
      in.skipBytes(in.readableBytes());
      return;
    }
    while (in.readableBytes() >= HEADER) {
      int start = in.readerIndex();
      int length = in.getInt(start + 1);
      if (length < 4) {
        broken = true;
        in.skipBytes(in.readableBytes());
        throw new ProtocolException(
            "invalid message length "
                + length
                + " for message type "
                + describe(in.getByte(start)));
      }
      if (length - 4 > maxMessageSize) {
        broken = true;
        in.skipBytes(in.readableBytes());
        throw new ProtocolException(
            "message of "
                + (length - 4)
                + " bytes exceeds the maximum of "
                + maxMessageSize
                + " (type "
                + describe(in.getByte(start))
                + ")");
      }
      int total = length + 1;
      if (in.readableBytes() < total) {
        return;
      }
      out.add(in.retainedSlice(start, total));
      in.skipBytes(total);
    }
  }

  static String describe(byte type) {
    return type >= 0x20 && type < 0x7f ? "'" + (char) type + "'" : String.format("0x%02x", type);
  }
}

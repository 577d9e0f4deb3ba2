package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;
import org.cryoprotect.proxy.protocol.Frames;
import org.cryoprotect.proxy.protocol.SqlState;
import org.cryoprotect.proxy.protocol.frontend.FrontendMessageTypes;

/**
 * Client to server in session mode: one server connection for the client's lifetime. Frames are
 * forwarded unchanged; a message type no client may send is refused here, so the server never sees
 * it and the client learns exactly what was wrong.
 *
 * <p>Ownership: each frame is handed to the server channel's write, or released here.
 */
final class ClientRelayHandler extends ChannelInboundHandlerAdapter {
  private final ClientConnection client;
  private final Channel server;

  ClientRelayHandler(ClientConnection client) {
    this.client = client;
    this.server = client.server().channel();
  }

  @Override
  public void channelRead(ChannelHandlerContext ctx, Object msg) {
    ByteBuf frame = (ByteBuf) msg;
    byte type = Frames.type(frame);
    if (!FrontendMessageTypes.isKnown(type) || type == FrontendMessageTypes.PASSWORD) {
      frame.release();
      client.fatal(SqlState.PROTOCOL_VIOLATION, "invalid frontend message type " + describe(type));
      return;
    }
    if (type == FrontendMessageTypes.TERMINATE) {
      client.closeReason("client terminated");
      server.writeAndFlush(frame).addListener(f -> server.close());
      ctx.close();
      return;
    }
    server.write(frame, server.voidPromise());
  }

  @Override
  public void channelReadComplete(ChannelHandlerContext ctx) {
    server.flush();
  }

  @Override
  public void channelWritabilityChanged(ChannelHandlerContext ctx) {
    server.config().setAutoRead(ctx.channel().isWritable());
    ctx.fireChannelWritabilityChanged();
  }

  @Override
  public void channelInactive(ChannelHandlerContext ctx) {
    server.close();
    ctx.fireChannelInactive();
  }

  @Override
  public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
    ClientErrors.handle(client, cause);
  }

  private static String describe(byte type) {
    return type >= 0x20 && type < 0x7f ? "'" + (char) type + "'" : String.format("0x%02x", type);
  }
}

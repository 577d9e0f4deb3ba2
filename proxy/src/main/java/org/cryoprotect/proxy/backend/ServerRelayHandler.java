package org.cryoprotect.proxy.backend;

import io.netty.channel.Channel;
import io.netty.channel.ChannelHandlerContext;
import io.netty.channel.ChannelInboundHandlerAdapter;

/**
 * Server to client: forwards whole frames unchanged, flushes once per read burst, and stops reading
 * from the server while the client cannot keep up (STYLE rule 6).
 *
 * <p>Ownership: each frame is handed to the client channel's write, which releases it.
 */
public final class ServerRelayHandler extends ChannelInboundHandlerAdapter {
  /** What to do when the server goes away while the client still expects it. */
  public interface Listener {
    void serverClosed();
  }

  private final Channel client;
  private final Listener listener;

  public ServerRelayHandler(Channel client, Listener listener) {
    this.client = client;
    this.listener = listener;
  }

  @Override
  public void channelRead(ChannelHandlerContext ctx, Object msg) {
    client.write(msg, client.voidPromise());
  }

  @Override
  public void channelReadComplete(ChannelHandlerContext ctx) {
    client.flush();
  }

  @Override
  public void channelWritabilityChanged(ChannelHandlerContext ctx) {
    client.config().setAutoRead(ctx.channel().isWritable());
    ctx.fireChannelWritabilityChanged();
  }

  @Override
  public void channelInactive(ChannelHandlerContext ctx) {
    listener.serverClosed();
  }

  @Override
  public void exceptionCaught(ChannelHandlerContext ctx, Throwable cause) {
    ctx.close();
  }
}

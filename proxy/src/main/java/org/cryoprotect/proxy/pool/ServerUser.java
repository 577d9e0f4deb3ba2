package org.cryoprotect.proxy.pool;

import io.netty.buffer.ByteBuf;
import io.netty.channel.EventLoop;

/**
 * Whoever holds a checked-out server connection. The server's frames are delivered on the user's
 * own event loop, so the user's state never needs a lock even when the server connection lives on
 * another loop.
 */
public interface ServerUser {
  EventLoop loop();

  /** A whole backend frame; the user owns (and must release or forward) it. */
  void serverFrame(ByteBuf frame);

  /** The server's read burst ended: flush what was forwarded. */
  void serverReadComplete();

  /**
   * The server connection {@code server} closed while this user held it. Delivered on the user's
   * loop, possibly after the user already let go of it: the user checks it still holds it.
   */
  void serverClosed(PooledServer server);

  /** The server's socket can (not) take more writes: stop or resume reading from the client. */
  void serverWritable(boolean writable);
}

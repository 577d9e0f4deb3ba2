package org.cryoprotect.proxy.frontend;

import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import java.util.ArrayDeque;
import java.util.Iterator;

/**
 * What a session keeps so that one unit of work (the client's messages up to its first Sync or
 * Query) can run again on another node (DESIGN §4): copies of the client's original messages, and
 * the server's replies held back from the client until the unit ends. While nothing of the reply
 * has reached the client, the unit can be replayed; once the replies are released ({@link
 * #commit}), it cannot.
 *
 * <p>Bounded: past {@link #MAX_BYTES} of messages or of replies the window gives up and the unit
 * streams as usual, without a replay. Holding replies costs nothing visible for the small results
 * this is for: they arrive in one read anyway.
 */
final class ReplayWindow {
  static final int MAX_BYTES = 256 * 1024;

  private final ArrayDeque<ByteBuf> requests = new ArrayDeque<>();
  private final ArrayDeque<ByteBuf> replies = new ArrayDeque<>();
  private int requestBytes;
  private int replyBytes;
  private boolean open;
  private boolean sealed; // the unit's last message (Sync or Query) went out

  boolean isOpen() {
    return open;
  }

  /** Whether the unit is complete: later client messages wait for its end. */
  boolean isSealed() {
    return open && sealed;
  }

  void open() {
    open = true;
    sealed = false;
  }

  /**
   * Keeps a copy of a client message about to be sent; false when the window is over its bound (the
   * caller then commits).
   */
  boolean request(ByteBuf frame) {
    requestBytes += frame.readableBytes();
    if (requestBytes > MAX_BYTES) {
      return false;
    }
    requests.add(frame.retainedDuplicate());
    byte type = frame.getByte(frame.readerIndex());
    if (type == 'S' || type == 'Q') {
      sealed = true;
    }
    return true;
  }

  /** Holds a reply back; false when over the bound (the caller commits, then writes it). */
  boolean hold(ByteBuf frame) {
    replyBytes += frame.readableBytes();
    if (replyBytes > MAX_BYTES) {
      return false;
    }
    replies.add(frame);
    return true;
  }

  /** The unit will not be replayed: the held replies go to the client, the copies are dropped. */
  void commit(ChannelHandlerContext ctx, boolean deliver) {
    ByteBuf frame;
    while ((frame = replies.poll()) != null) {
      if (deliver) {
        ctx.write(frame, ctx.voidPromise());
      } else {
        frame.release();
      }
    }
    releaseAll(requests);
    reset();
  }

  /**
   * The unit runs again: replies are dropped, the copies go back to the front of {@code backlog}.
   */
  void rewind(ArrayDeque<ByteBuf> backlog) {
    releaseAll(replies);
    for (Iterator<ByteBuf> it = requests.descendingIterator(); it.hasNext(); ) {
      backlog.addFirst(it.next());
    }
    requests.clear();
    reset();
  }

  private void reset() {
    open = false;
    sealed = false;
    requestBytes = 0;
    replyBytes = 0;
  }

  private static void releaseAll(ArrayDeque<ByteBuf> frames) {
    ByteBuf frame;
    while ((frame = frames.poll()) != null) {
      frame.release();
    }
  }
}

package org.cryoprotect.proxy.frontend;

import io.netty.channel.ChannelHandlerContext;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import org.cryoprotect.proxy.frontend.Pending.Kind;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.protocol.backend.ErrorResponse;
import org.cryoprotect.proxy.protocol.backend.ReadyForQuery;

/**
 * The replies a session still waits for, oldest first, and the protocol's rules for them when
 * something fails: an error in the extended protocol cancels everything up to the next Sync, and a
 * lost server connection still owes the client an answer for each message it sent.
 */
final class ReplyQueue {
  private final ArrayDeque<Pending> queue = new ArrayDeque<>();

  void add(Pending reply) {
    queue.add(reply);
  }

  Pending add(Kind kind, boolean toClient) {
    Pending p = new Pending(kind, toClient, null);
    queue.add(p);
    return p;
  }

  Pending peek() {
    return queue.peekFirst();
  }

  void poll() {
    queue.pollFirst();
  }

  boolean isEmpty() {
    return queue.isEmpty();
  }

  void clear() {
    queue.clear();
  }

  boolean awaits(Kind kind) {
    for (Pending p : queue) {
      if (p.kind == kind) {
        return true;
      }
    }
    return false;
  }

  /**
   * The first Execute waiting before the next Sync: the statement an error of an earlier message of
   * the batch (a Bind that failed planning) stops. Null when there is none.
   */
  Pending executeBeforeSync() {
    for (Pending p : queue) {
      if (p.kind == Kind.SYNC) {
        return null;
      }
      if (p.kind == Kind.EXECUTE) {
        return p;
      }
    }
    return null;
  }

  /** Takes the head when it is a reply the proxy gives itself (ParseComplete, CloseComplete). */
  Kind pollLocal() {
    Pending head = queue.peekFirst();
    if (head == null
        || (head.kind != Kind.LOCAL_PARSE_COMPLETE && head.kind != Kind.LOCAL_CLOSE_COMPLETE)) {
      return null;
    }
    queue.pollFirst();
    return head.kind;
  }

  /**
   * The head failed with an ErrorResponse in the extended protocol: the server skips every message
   * up to the Sync, so their replies will not come, and what the proxy recorded for them (and for
   * what it answered itself among them) is undone ({@link StatementRenamer#undo}), newest first, so
   * that each undo finds what the message before it left. Returns true when the queue held the
   * batch's Sync; false when the client has not sent it yet, and the server skips what it still
   * sends up to it.
   */
  boolean skipToSync(PooledServer server, StatementRenamer statements) {
    List<Pending> undone = new ArrayList<>(); // the failed head, then what the server skipped
    Pending head = queue.pollFirst();
    while (head != null) {
      undone.add(head);
      head = queue.peekFirst();
      if (head == null || head.kind == Kind.SYNC) {
        break;
      }
      queue.pollFirst();
    }
    for (int i = undone.size() - 1; i >= 0; i--) {
      Pending p = undone.get(i);
      if (p.kind == Kind.PARSE || p.clientName != null || p.closed != null) {
        statements.undo(p, server, i > 0);
      }
    }
    return head != null;
  }

  /** Whether any reply still due is the client's (not only the proxy's own queries). */
  boolean owesClient() {
    for (Pending p : queue) {
      if (p.toClient) {
        return true;
      }
    }
    return false;
  }

  /**
   * The server connection broke: writes what each of the client's messages is owed (the {@code
   * lost} error once per unit unless {@code errorSent}, and a ReadyForQuery with {@code status} for
   * each Query, Sync and FunctionCall) and empties the queue. Returns true when the client's batch
   * did not reach its Sync, so what it sends up to that Sync must be skipped, as the server would.
   */
  boolean answerLost(
      ChannelHandlerContext ctx,
      ErrorResponse lost,
      boolean errorSent,
      boolean midBatch,
      byte status) {
    boolean owed = !errorSent;
    boolean synced = true;
    for (Pending p : queue) {
      if (!p.toClient) {
        continue;
      }
      if (p.kind == Kind.QUERY || p.kind == Kind.SYNC || p.kind == Kind.FUNCTION) {
        if (owed) {
          ctx.write(lost.encode(ctx.alloc()));
        }
        ctx.write(new ReadyForQuery(status).encode(ctx.alloc()));
        owed = true;
        synced = true;
      } else {
        synced = false;
      }
    }
    queue.clear();
    if (!midBatch && synced) {
      return false;
    }
    if (owed) {
      ctx.write(lost.encode(ctx.alloc()));
    }
    return true;
  }
}

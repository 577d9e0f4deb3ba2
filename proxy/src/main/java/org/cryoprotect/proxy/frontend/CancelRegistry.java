package org.cryoprotect.proxy.frontend;

import io.netty.channel.Channel;
import io.netty.channel.EventLoop;
import io.netty.util.concurrent.FastThreadLocal;
import java.nio.ByteBuffer;
import java.security.SecureRandom;
import java.util.concurrent.ConcurrentHashMap;
import org.cryoprotect.proxy.backend.ServerConnector;
import org.cryoprotect.proxy.pool.PooledServer;
import org.cryoprotect.proxy.protocol.backend.BackendKeyData;
import org.cryoprotect.proxy.protocol.frontend.CancelRequest;

/**
 * Maps the cancel keys the proxy handed out to their clients. A client never sees a server's key,
 * so a CancelRequest can only ever reach the server connection that client is using now.
 */
public final class CancelRegistry {
  private final SecureRandom random = new SecureRandom();

  /**
   * Each event loop's random bytes for keys, drawn from {@link #random} 4 KiB at a time: one draw
   * (one lock, one read of the kernel's generator) per 512 logins instead of two per login.
   */
  private final FastThreadLocal<ByteBuffer> keyBytes =
      new FastThreadLocal<>() {
        @Override
        protected ByteBuffer initialValue() {
          return ByteBuffer.allocate(4096).position(4096);
        }
      };

  private final ConcurrentHashMap<Integer, ClientConnection> byProcessId =
      new ConcurrentHashMap<>();

  /**
   * A new client with a fresh, registered key: positive process id (some tools print it), random
   * secret. Registered from the start; until it has a server connection a cancel does nothing.
   */
  ClientConnection newClient(Channel channel) {
    while (true) {
      long key = nextKey();
      int pid = (int) (key >>> 32) & Integer.MAX_VALUE;
      if (pid == 0) {
        continue;
      }
      ClientConnection client = new ClientConnection(channel, new BackendKeyData(pid, (int) key));
      if (byProcessId.putIfAbsent(pid, client) == null) {
        return client;
      }
    }
  }

  private long nextKey() {
    ByteBuffer bytes = keyBytes.get();
    if (!bytes.hasRemaining()) {
      random.nextBytes(bytes.array());
      bytes.clear();
    }
    return bytes.getLong();
  }

  void unregister(ClientConnection client) {
    byProcessId.remove(client.keyData().processId(), client);
  }

  int size() {
    return byProcessId.size();
  }

  /** Forwards the cancel, translated to the server's key; a wrong or stale key is ignored. */
  void cancel(CancelRequest request, EventLoop loop, ServerConnector connector) {
    ClientConnection client = byProcessId.get(request.processId());
    if (client == null || client.keyData().secretKey() != request.secretKey()) {
      return; // PostgreSQL also ignores unknown keys silently: no oracle for guessing
    }
    PooledServer server = client.server();
    if (server != null) {
      cancel(server, client, loop, connector);
    }
  }

  /**
   * Cancels what {@code client} runs on {@code server}, if that is still the client's; the server
   * connection is lent to nobody else until the server has taken the cancel.
   */
  static void cancel(
      PooledServer server, ClientConnection client, EventLoop loop, ServerConnector connector) {
    if (!server.beginCancel(client)) {
      return; // given back meanwhile: the query it ran is over
    }
    BackendKeyData key = server.connection().keyData();
    connector
        .cancel(loop, server.node(), new CancelRequest(key.processId(), key.secretKey()))
        .addListener(f -> server.cancelDone());
  }
}

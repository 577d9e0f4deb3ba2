package org.cryoprotect.embedded;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.util.HashSet;
import java.util.Set;

/**
 * Hands out loopback TCP ports that were free a moment ago. There is an unavoidable race between
 * closing the probe socket and the real server binding; callers that start external servers retry
 * on "address in use" (see {@link PgCluster}).
 */
public final class FreePorts {

  // The kernel may hand the same ephemeral port to two consecutive probes once the first is
  // closed; remembering what this JVM already gave out keeps two servers from being told the same.
  private static final Set<Integer> HANDED_OUT = new HashSet<>();

  private FreePorts() {}

  public static synchronized int next() {
    for (int attempt = 0; attempt < 100; attempt++) {
      int port = probe();
      if (HANDED_OUT.add(port)) {
        return port;
      }
    }
    throw new IllegalStateException("no unused loopback port after 100 attempts");
  }

  private static int probe() {
    try (ServerSocket socket = new ServerSocket()) {
      // Without SO_REUSEADDR a port in TIME_WAIT fails here rather than later in the server.
      socket.setReuseAddress(false);
      socket.bind(new InetSocketAddress(InetAddress.getLoopbackAddress(), 0));
      return socket.getLocalPort();
    } catch (IOException e) {
      throw new UncheckedIOException("cannot probe for a free port", e);
    }
  }
}

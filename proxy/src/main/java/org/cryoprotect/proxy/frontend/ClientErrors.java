package org.cryoprotect.proxy.frontend;

import io.netty.handler.codec.DecoderException;
import java.io.IOException;
import javax.net.ssl.SSLException;
import org.cryoprotect.proxy.protocol.ProtocolException;
import org.cryoprotect.proxy.protocol.SqlState;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/** The one place where an exception on a client channel becomes what the client is told. */
final class ClientErrors {
  private static final Logger log = LoggerFactory.getLogger(ClientErrors.class);

  private ClientErrors() {}

  static void handle(ClientConnection client, Throwable cause) {
    Throwable root =
        cause instanceof DecoderException && cause.getCause() != null ? cause.getCause() : cause;
    if (root instanceof ProtocolException) {
      client.fatal(SqlState.PROTOCOL_VIOLATION, root.getMessage());
    } else if (root instanceof SSLException) {
      client.closeReason("TLS failure: " + root.getMessage());
      client.channel().close();
    } else if (root instanceof IOException) {
      client.closeReason("I/O error: " + root.getMessage());
      client.channel().close();
    } else {
      log.error("unexpected failure on client {}", client.address(), root);
      client.fatal(SqlState.INTERNAL_ERROR, "internal error: " + root);
    }
  }
}

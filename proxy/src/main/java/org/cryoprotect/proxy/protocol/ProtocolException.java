package org.cryoprotect.proxy.protocol;

/**
 * A peer broke the wire protocol: bad framing, an oversized or unknown message. Always 08P01 and
 * always fatal for the connection that sent it, never for anyone else.
 */
public final class ProtocolException extends RuntimeException {
  public ProtocolException(String message) {
    super(message, null, false, false);
  }
}

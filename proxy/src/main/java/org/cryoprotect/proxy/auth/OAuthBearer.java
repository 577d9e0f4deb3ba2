package org.cryoprotect.proxy.auth;

import java.nio.charset.StandardCharsets;
import java.util.Locale;

/**
 * The SASL OAUTHBEARER mechanism (RFC 7628), server side, as PostgreSQL 18 speaks it: the client's
 * initial response is a GS2 header without channel binding ({@code n,,} or {@code y,,}, an optional
 * {@code a=authzid}), then key=value pairs each ended by 0x01, and a final 0x01; {@code auth=Bearer
 * <token>} carries the token. A refusal is a JSON challenge naming the status, which the client
 * acknowledges with a single 0x01 before the server ends the exchange with an error.
 */
public final class OAuthBearer {
  public static final String MECHANISM = "OAUTHBEARER";
  private static final char KVSEP = 0x01;

  private OAuthBearer() {}

  /**
   * The bearer token of an initial response; an empty string when the client sent none (it asks
   * what the server wants: the discovery step). Throws {@link AuthException} (malformed) when the
   * message does not follow RFC 7628.
   */
  public static String token(byte[] initialResponse) throws AuthException {
    String text = new String(initialResponse, StandardCharsets.UTF_8);
    if (text.length() < 3 || (text.charAt(0) != 'n' && text.charAt(0) != 'y')) {
      throw AuthException.malformed(
          "OAUTHBEARER: malformed GS2 header (channel binding is not supported)");
    }
    if (text.charAt(1) != ',') {
      throw AuthException.malformed("OAUTHBEARER: malformed GS2 header");
    }
    int authzidEnd = text.indexOf(',', 2);
    if (authzidEnd < 0) {
      throw AuthException.malformed("OAUTHBEARER: malformed GS2 header");
    }
    String authzid = text.substring(2, authzidEnd);
    if (!authzid.isEmpty() && !authzid.startsWith("a=")) {
      throw AuthException.malformed("OAUTHBEARER: malformed authorization identity");
    }
    String rest = text.substring(authzidEnd + 1);
    if (rest.isEmpty() || rest.charAt(0) != KVSEP || !rest.endsWith("" + KVSEP + KVSEP)) {
      throw AuthException.malformed("OAUTHBEARER: malformed key-value pairs");
    }
    String token = null;
    for (String pair : rest.substring(1, rest.length() - 2).split(String.valueOf(KVSEP), -1)) {
      int eq = pair.indexOf('=');
      if (eq <= 0) {
        throw AuthException.malformed("OAUTHBEARER: malformed key-value pair");
      }
      if (pair.substring(0, eq).equals("auth")) {
        if (token != null) {
          throw AuthException.malformed("OAUTHBEARER: more than one auth value");
        }
        token = bearer(pair.substring(eq + 1));
      }
    }
    if (token == null) {
      throw AuthException.malformed("OAUTHBEARER: no auth value");
    }
    return token;
  }

  /** {@code Bearer <token>} (scheme case-insensitive), or "" for an empty value. */
  private static String bearer(String value) throws AuthException {
    if (value.isEmpty()) {
      return "";
    }
    int space = value.indexOf(' ');
    if (space < 0 || !value.substring(0, space).toLowerCase(Locale.ROOT).equals("bearer")) {
      throw AuthException.malformed("OAUTHBEARER: the auth value is not a Bearer token");
    }
    return value.substring(space + 1).strip();
  }

  /** The challenge that refuses a token: RFC 7628's error JSON. */
  public static byte[] refusal() {
    return "{\"status\":\"invalid_token\"}".getBytes(StandardCharsets.UTF_8);
  }

  /** Whether the client's answer to the refusal is the single 0x01 the RFC asks for. */
  public static boolean acknowledges(byte[] response) {
    return response.length == 1 && response[0] == KVSEP;
  }
}

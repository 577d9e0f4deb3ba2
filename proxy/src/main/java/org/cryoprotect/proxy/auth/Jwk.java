package org.cryoprotect.proxy.auth;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.math.BigInteger;
import java.security.AlgorithmParameters;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.interfaces.ECPrivateKey;
import java.security.interfaces.ECPublicKey;
import java.security.interfaces.RSAPrivateCrtKey;
import java.security.interfaces.RSAPublicKey;
import java.security.spec.ECGenParameterSpec;
import java.security.spec.ECParameterSpec;
import java.security.spec.ECPoint;
import java.security.spec.ECPrivateKeySpec;
import java.security.spec.ECPublicKeySpec;
import java.security.spec.RSAPrivateCrtKeySpec;
import java.security.spec.RSAPublicKeySpec;
import java.util.Arrays;
import java.util.Base64;

/**
 * JSON Web Keys (RFC 7517/7518) for the two algorithm families CryoProxy signs with: RSA (RS256)
 * and EC P-256 (ES256). Written by {@code cryoproxy keys generate}, read by {@code cryoproxy token
 * issue} (private keys) and by token verification (public keys from a JWKS file).
 */
public final class Jwk {
  public static final String RS256 = "RS256";
  public static final String ES256 = "ES256";
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final int P256_BYTES = 32;

  private Jwk() {}

  /** The public half as a JWK: {@code kty}, {@code kid}, {@code alg}, {@code use}, the key. */
  public static ObjectNode publicJwk(KeyPair pair, String kid, String alg) {
    ObjectNode jwk = header(kid, alg);
    if (pair.getPublic() instanceof RSAPublicKey rsa) {
      jwk.put("kty", "RSA");
      jwk.put("n", unsigned(rsa.getModulus()));
      jwk.put("e", unsigned(rsa.getPublicExponent()));
    } else if (pair.getPublic() instanceof ECPublicKey ec) {
      jwk.put("kty", "EC");
      jwk.put("crv", "P-256");
      jwk.put("x", fixed(ec.getW().getAffineX()));
      jwk.put("y", fixed(ec.getW().getAffineY()));
    } else {
      throw new IllegalArgumentException("not an RSA or EC key");
    }
    return jwk;
  }

  /** The whole pair as a private JWK (the public members plus the private ones). */
  public static ObjectNode privateJwk(KeyPair pair, String kid, String alg) {
    ObjectNode jwk = publicJwk(pair, kid, alg);
    if (pair.getPrivate() instanceof RSAPrivateCrtKey rsa) {
      jwk.put("d", unsigned(rsa.getPrivateExponent()));
      jwk.put("p", unsigned(rsa.getPrimeP()));
      jwk.put("q", unsigned(rsa.getPrimeQ()));
      jwk.put("dp", unsigned(rsa.getPrimeExponentP()));
      jwk.put("dq", unsigned(rsa.getPrimeExponentQ()));
      jwk.put("qi", unsigned(rsa.getCrtCoefficient()));
    } else if (pair.getPrivate() instanceof ECPrivateKey ec) {
      jwk.put("d", fixed(ec.getS()));
    } else {
      throw new IllegalArgumentException("not an RSA (CRT) or EC private key");
    }
    return jwk;
  }

  /** The public key of a JWK. */
  public static PublicKey publicKey(JsonNode jwk) throws GeneralSecurityException {
    return switch (member(jwk, "kty")) {
      case "RSA" ->
          KeyFactory.getInstance("RSA")
              .generatePublic(new RSAPublicKeySpec(number(jwk, "n"), number(jwk, "e")));
      case "EC" ->
          KeyFactory.getInstance("EC")
              .generatePublic(
                  new ECPublicKeySpec(new ECPoint(number(jwk, "x"), number(jwk, "y")), p256(jwk)));
      default -> throw new GeneralSecurityException("unsupported kty " + jwk.path("kty"));
    };
  }

  /** The private key of a private JWK. */
  public static PrivateKey privateKey(JsonNode jwk) throws GeneralSecurityException {
    return switch (member(jwk, "kty")) {
      case "RSA" ->
          KeyFactory.getInstance("RSA")
              .generatePrivate(
                  new RSAPrivateCrtKeySpec(
                      number(jwk, "n"),
                      number(jwk, "e"),
                      number(jwk, "d"),
                      number(jwk, "p"),
                      number(jwk, "q"),
                      number(jwk, "dp"),
                      number(jwk, "dq"),
                      number(jwk, "qi")));
      case "EC" ->
          KeyFactory.getInstance("EC")
              .generatePrivate(new ECPrivateKeySpec(number(jwk, "d"), p256(jwk)));
      default -> throw new GeneralSecurityException("unsupported kty " + jwk.path("kty"));
    };
  }

  /** {@code RS256} for an RSA JWK, {@code ES256} for a P-256 one, unless it names its own. */
  public static String algorithm(JsonNode jwk) throws GeneralSecurityException {
    if (jwk.hasNonNull("alg")) {
      return jwk.get("alg").asText();
    }
    return switch (member(jwk, "kty")) {
      case "RSA" -> RS256;
      case "EC" -> ES256;
      default -> throw new GeneralSecurityException("unsupported kty " + jwk.path("kty"));
    };
  }

  public static ObjectMapper json() {
    return JSON;
  }

  private static ObjectNode header(String kid, String alg) {
    ObjectNode jwk = JSON.createObjectNode();
    jwk.put("kid", kid);
    jwk.put("alg", alg);
    jwk.put("use", "sig");
    return jwk;
  }

  private static ECParameterSpec p256(JsonNode jwk) throws GeneralSecurityException {
    if (!"P-256".equals(member(jwk, "crv"))) {
      throw new GeneralSecurityException("unsupported curve " + jwk.path("crv"));
    }
    AlgorithmParameters params = AlgorithmParameters.getInstance("EC");
    params.init(new ECGenParameterSpec("secp256r1"));
    return params.getParameterSpec(ECParameterSpec.class);
  }

  private static String member(JsonNode jwk, String name) throws GeneralSecurityException {
    JsonNode value = jwk.get(name);
    if (value == null || !value.isTextual()) {
      throw new GeneralSecurityException("JWK member \"" + name + "\" is missing");
    }
    return value.asText();
  }

  private static BigInteger number(JsonNode jwk, String name) throws GeneralSecurityException {
    try {
      return new BigInteger(1, Base64.getUrlDecoder().decode(member(jwk, name)));
    } catch (IllegalArgumentException e) {
      throw new GeneralSecurityException("JWK member \"" + name + "\" is not base64url");
    }
  }

  /** Base64url of the big-endian magnitude, without the sign byte Java adds. */
  private static String unsigned(BigInteger value) {
    byte[] bytes = value.toByteArray();
    if (bytes.length > 1 && bytes[0] == 0) {
      bytes = Arrays.copyOfRange(bytes, 1, bytes.length);
    }
    return Base64.getUrlEncoder().withoutPadding().encodeToString(bytes);
  }

  /** Base64url of a P-256 coordinate or scalar, left-padded to 32 bytes as RFC 7518 requires. */
  private static String fixed(BigInteger value) {
    byte[] bytes = value.toByteArray();
    byte[] out = new byte[P256_BYTES];
    int copy = Math.min(bytes.length, P256_BYTES);
    System.arraycopy(bytes, bytes.length - copy, out, P256_BYTES - copy, copy);
    return Base64.getUrlEncoder().withoutPadding().encodeToString(out);
  }
}

package org.cryoprotect.embedded;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.GeneralSecurityException;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;
import java.util.Date;
import org.bouncycastle.asn1.x500.X500Name;
import org.bouncycastle.asn1.x509.BasicConstraints;
import org.bouncycastle.asn1.x509.ExtendedKeyUsage;
import org.bouncycastle.asn1.x509.Extension;
import org.bouncycastle.asn1.x509.GeneralName;
import org.bouncycastle.asn1.x509.GeneralNames;
import org.bouncycastle.asn1.x509.KeyPurposeId;
import org.bouncycastle.asn1.x509.KeyUsage;
import org.bouncycastle.cert.X509v3CertificateBuilder;
import org.bouncycastle.cert.jcajce.JcaX509CertificateConverter;
import org.bouncycastle.cert.jcajce.JcaX509ExtensionUtils;
import org.bouncycastle.cert.jcajce.JcaX509v3CertificateBuilder;
import org.bouncycastle.operator.OperatorCreationException;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;

/**
 * A throwaway CA and one server certificate it signed, as PEM files: {@code ca.crt}, {@code
 * server.crt} and {@code server.key} (unencrypted PKCS#8, which both Netty and PostgreSQL's OpenSSL
 * read). The server certificate names {@code DNS:localhost} and {@code IP:127.0.0.1} so clients can
 * use {@code sslmode=verify-full} against either.
 */
public final class TestCerts {

  private final Path caCert;
  private final Path serverCert;
  private final Path serverKey;

  private TestCerts(Path caCert, Path serverCert, Path serverKey) {
    this.caCert = caCert;
    this.serverCert = serverCert;
    this.serverKey = serverKey;
  }

  /** Wraps existing PEM files, e.g. ones a test made itself. */
  public static TestCerts of(Path caCert, Path serverCert, Path serverKey) {
    return new TestCerts(caCert, serverCert, serverKey);
  }

  /** Generates into a fresh temporary directory; the caller deletes it if it cares. */
  public static TestCerts generate() {
    try {
      return generate(Files.createTempDirectory("cryoproxy-certs-"));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  public static TestCerts generate(Path dir) {
    try {
      Files.createDirectories(dir);
      KeyPair caKeys = rsaKeyPair();
      X500Name caName = new X500Name("CN=CryoProxy Test CA");
      X509v3CertificateBuilder ca = builder(caName, caName, caKeys.getPublic());
      JcaX509ExtensionUtils ext = new JcaX509ExtensionUtils();
      ca.addExtension(Extension.basicConstraints, true, new BasicConstraints(true));
      ca.addExtension(
          Extension.keyUsage, true, new KeyUsage(KeyUsage.keyCertSign | KeyUsage.cRLSign));
      ca.addExtension(
          Extension.subjectKeyIdentifier,
          false,
          ext.createSubjectKeyIdentifier(caKeys.getPublic()));
      X509Certificate caCertificate = sign(ca, caKeys.getPrivate());

      KeyPair serverKeys = rsaKeyPair();
      X509v3CertificateBuilder server =
          builder(caName, new X500Name("CN=localhost"), serverKeys.getPublic());
      server.addExtension(Extension.basicConstraints, true, new BasicConstraints(false));
      server.addExtension(
          Extension.keyUsage,
          true,
          new KeyUsage(KeyUsage.digitalSignature | KeyUsage.keyEncipherment));
      server.addExtension(
          Extension.extendedKeyUsage, false, new ExtendedKeyUsage(KeyPurposeId.id_kp_serverAuth));
      server.addExtension(
          Extension.subjectAlternativeName,
          false,
          new GeneralNames(
              new GeneralName[] {
                new GeneralName(GeneralName.dNSName, "localhost"),
                new GeneralName(GeneralName.iPAddress, "127.0.0.1")
              }));
      server.addExtension(
          Extension.subjectKeyIdentifier,
          false,
          ext.createSubjectKeyIdentifier(serverKeys.getPublic()));
      server.addExtension(
          Extension.authorityKeyIdentifier, false, ext.createAuthorityKeyIdentifier(caCertificate));
      X509Certificate serverCertificate = sign(server, caKeys.getPrivate());

      TestCerts certs =
          new TestCerts(
              dir.resolve("ca.crt"), dir.resolve("server.crt"), dir.resolve("server.key"));
      Files.writeString(certs.caCert, pem("CERTIFICATE", caCertificate.getEncoded()));
      Files.writeString(certs.serverCert, pem("CERTIFICATE", serverCertificate.getEncoded()));
      Files.writeString(certs.serverKey, "");
      // libpq-style servers refuse a key readable by group or others.
      Files.setPosixFilePermissions(certs.serverKey, PosixFilePermissions.fromString("rw-------"));
      Files.writeString(certs.serverKey, pem("PRIVATE KEY", serverKeys.getPrivate().getEncoded()));
      return certs;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (GeneralSecurityException | OperatorCreationException e) {
      throw new IllegalStateException("cannot generate test certificates", e);
    }
  }

  public Path caCert() {
    return caCert;
  }

  public Path serverCert() {
    return serverCert;
  }

  public Path serverKey() {
    return serverKey;
  }

  public X509Certificate caCertificate() {
    try (InputStream in = Files.newInputStream(caCert)) {
      return (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("unreadable CA certificate " + caCert, e);
    }
  }

  /** Writes a PKCS#12 truststore holding only the CA, for JSSE clients that want one. */
  public Path writeTrustStore(Path file, char[] password) {
    try {
      KeyStore store = KeyStore.getInstance("PKCS12");
      store.load(null, null);
      store.setCertificateEntry("cryoproxy-test-ca", caCertificate());
      try (OutputStream out = Files.newOutputStream(file)) {
        store.store(out, password);
      }
      return file;
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("cannot write truststore " + file, e);
    }
  }

  private static KeyPair rsaKeyPair() throws GeneralSecurityException {
    KeyPairGenerator generator = KeyPairGenerator.getInstance("RSA");
    generator.initialize(2048);
    return generator.generateKeyPair();
  }

  private static X509v3CertificateBuilder builder(
      X500Name issuer, X500Name subject, PublicKey key) {
    // Backdated so a little clock skew between test processes never makes it "not yet valid".
    Instant now = Instant.now();
    return new JcaX509v3CertificateBuilder(
        issuer,
        new BigInteger(64, new SecureRandom()).abs().add(BigInteger.ONE),
        Date.from(now.minus(Duration.ofDays(1))),
        Date.from(now.plus(Duration.ofDays(365))),
        subject,
        key);
  }

  private static X509Certificate sign(X509v3CertificateBuilder builder, PrivateKey key)
      throws OperatorCreationException, GeneralSecurityException {
    return new JcaX509CertificateConverter()
        .getCertificate(builder.build(new JcaContentSignerBuilder("SHA256withRSA").build(key)));
  }

  private static String pem(String type, byte[] der) {
    String body =
        Base64.getMimeEncoder(64, "\n".getBytes(StandardCharsets.US_ASCII)).encodeToString(der);
    return "-----BEGIN " + type + "-----\n" + body + "\n-----END " + type + "-----\n";
  }
}

// Package s3 is iotsim's minimal S3-style object store: the files for OTA.
//
// It serves path-style requests (PUT, GET, HEAD, DELETE of
// /<bucket>/<key>, CreateBucket, ListBuckets, ListObjectsV2 and multipart
// uploads), so that `aws s3 cp FILE s3://BUCKET/KEY --endpoint-url URL`
// works unchanged, downloads with HTTP Range (206, Content-Range, 416) so
// that an interrupted download resumes, and expiring presigned GET URLs
// (S3's query-string form, X-Amz-Date + X-Amz-Expires + X-Amz-Signature)
// for the ${aws:iot:s3-presigned-url:...} placeholders of job documents.
//
// Buckets spring into existence on the first PUT into them. Object bodies
// live as files under the store's directory, their metadata in the store
// database, so both survive a restart. Every request must be SigV4-signed
// (Authorization header, or presigned query) with Options.Credentials, as
// S3 checks it (cloud/sigv4): refusals are S3's AccessDenied,
// InvalidAccessKeyId, SignatureDoesNotMatch, RequestTimeTooSkewed; a body
// that does not match its signed x-amz-content-sha256 is not stored. The
// chunk signatures of aws-chunked uploads are not checked. PresignGet signs
// with the same credentials. Objects are bounded by Options.MaxObjectBytes
// (EntityTooLarge).
//
// Mount puts the store in front of another handler on the same listener:
// requests under /s3/ (the endpoint to give the CLI is
// http://HOST:PORT/s3) and requests SigV4-signed for service "s3" go to
// the store, everything else to the next handler.
package s3
